/** Facts about the workflow run, read from the runner's environment. */
export interface RunContext {
  repository: string;
  runId: string;
  runAttempt: string;
  job: string;
  actor: string;
  sha: string;
  serverUrl: string;
  runUrl: string;
  eventName: string;
  runnerTemp: string;
}

export function readRunContext(env: NodeJS.ProcessEnv = process.env): RunContext {
  const serverUrl = env.GITHUB_SERVER_URL || 'https://github.com';
  const repository = env.GITHUB_REPOSITORY || 'local/app';
  const runId = env.GITHUB_RUN_ID || String(Date.now());
  const runAttempt = env.GITHUB_RUN_ATTEMPT || '1';
  return {
    repository,
    runId,
    runAttempt,
    job: env.GITHUB_JOB || 'deploy',
    actor: env.GITHUB_ACTOR || env.USER || 'unknown',
    sha: env.GITHUB_SHA || '',
    serverUrl,
    runUrl: env.GITHUB_RUN_ID ? `${serverUrl}/${repository}/actions/runs/${runId}/attempts/${runAttempt}` : '',
    eventName: env.GITHUB_EVENT_NAME || '',
    runnerTemp: env.RUNNER_TEMP || env.TMPDIR || '/tmp'
  };
}
