export { createIncidents, type Incident, type IncidentInput, type Incidents, type IncidentsDeps } from './incidents.ts';
