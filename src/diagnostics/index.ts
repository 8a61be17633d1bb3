export { createIncidents, type Incident, type IncidentInput, type Incidents, type IncidentsDeps } from './incidents.ts';
export { explainWecomError, type Sentence } from './explain.ts';
export { createReadiness, type ProbeResult, type Readiness, type ReadinessDeps } from './readiness.ts';
export {
  type DiagnosticsSnapshot,
  type DiagnosticsSources,
  diagnosticsSnapshot,
  type EgressView,
  escapeHtml,
  renderDiagnosticsHtml,
  type TokenView,
} from './view.ts';
