export { createIncidents, type Incident, type IncidentInput, type Incidents, type IncidentsDeps } from './incidents.ts';
export {
  createWecomErrorScan,
  explanationPage,
  findVendorError,
  SCAN_MAX_BYTES,
  VENDOR_CAUSES,
  type VendorError,
  vendorAction,
  type WecomErrorScanDeps,
} from './vendor-errors.ts';
