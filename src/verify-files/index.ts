/** Verification files feature: see verify-files.ts. */
export { createVerifyFiles, MAX_FILE_BYTES, MAX_FILES, type VerifyFiles, type VerifyFilesDeps, VerifyFilesError } from './verify-files.ts';
