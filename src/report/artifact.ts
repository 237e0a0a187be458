/** Uploads the log and metrics files; outside GitHub (no runtime token) it only warns. */
import { DefaultArtifactClient } from '@actions/artifact';
import { basename, dirname } from 'node:path';

export interface ArtifactOutcome {
  name: string;
  id?: number;
  url?: string;
  skipped?: string;
}

export async function uploadReports(
  name: string,
  files: string[],
  retentionDays: number,
  uniqueSuffix?: string,
  env: NodeJS.ProcessEnv = process.env
): Promise<ArtifactOutcome> {
  if (!env.ACTIONS_RUNTIME_TOKEN || !env.ACTIONS_RESULTS_URL) {
    return {
      name,
      skipped: `not running on a GitHub runner (no ACTIONS_RUNTIME_TOKEN / ACTIONS_RESULTS_URL); the files stay at ${files.map((f) => basename(f)).join(', ')} in ${dirname(files[0])}`
    };
  }
  try {
    const client = new DefaultArtifactClient();
    let res;
    try {
      res = await client.uploadArtifact(name, files, dirname(files[0]), { retentionDays });
    } catch (e) {
      // Names are unique per run: a second deploy of the same app in the same job gets a suffixed name.
      if (!/409|already exists|Conflict/i.test((e as Error).message) || !uniqueSuffix) throw e;
      name = `${name}-${uniqueSuffix}`;
      res = await client.uploadArtifact(name, files, dirname(files[0]), { retentionDays });
    }
    const url =
      res.id && env.GITHUB_SERVER_URL && env.GITHUB_REPOSITORY && env.GITHUB_RUN_ID
        ? `${env.GITHUB_SERVER_URL}/${env.GITHUB_REPOSITORY}/actions/runs/${env.GITHUB_RUN_ID}/artifacts/${res.id}`
        : undefined;
    return { name, id: res.id, url };
  } catch (e) {
    return { name, skipped: `upload failed: ${(e as Error).message}` };
  }
}
