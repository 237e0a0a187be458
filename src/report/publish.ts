/** Where reports leave the action: the job summary and the artifact (its client is loaded only when used). */
import * as core from '../log/workflow.js';

// The artifact client is a large part of the bundle: loaded when needed, it stays out of the cold start.
export const uploadReports = async (...args: Parameters<typeof import('./artifact.js').uploadReports>) =>
  (await import('./artifact.js')).uploadReports(...args);

export async function writeSummary(markdown: string): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return;
  try {
    await core.summary.addRaw(markdown).write();
  } catch (e) {
    core.warning(`could not write the job summary: ${(e as Error).message}`);
  }
}
