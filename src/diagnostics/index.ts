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
export {
  createWecomErrorScan,
  explanationPage,
  findVendorError,
  SCAN_MAX_BYTES,
  VENDOR_CAUSES,
  type VendorError,
  type VendorErrorForm,
  vendorAction,
  type WecomErrorScanDeps,
} from './vendor-errors.ts';
