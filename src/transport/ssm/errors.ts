/** What an SSM (or EC2) error means for the user: the call, the instance, and what to check. */

export interface AwsError {
  name?: string;
  message?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
}

const CREDENTIALS =
  /CredentialsProviderError|Could not load credentials|UnrecognizedClientException|InvalidClientTokenId|ExpiredToken|security token/i;

/** The error of an SSM call, explained (the original name and message are kept at the end). */
export function explainSsmError(
  call: 'SendCommand' | 'GetCommandInvocation' | 'CancelCommand',
  instanceId: string,
  region: string,
  e: unknown
): Error {
  const err = e as AwsError;
  const name = err.name ?? 'Error';
  const raw = `${name}: ${err.message ?? String(e)}`;
  let why: string;
  if (CREDENTIALS.test(`${name} ${err.message}`)) {
    why = 'no usable AWS credentials on the runner: add aws-actions/configure-aws-credentials (OIDC) before this step';
  } else if (name === 'AccessDeniedException' || /not authorized|AccessDenied/i.test(raw)) {
    why =
      call === 'SendCommand'
        ? `the job's role may not run commands on ${instanceId}: it needs ssm:SendCommand on arn:aws:ssm:${region}::document/AWS-RunShellScript and on the instance (arn:aws:ec2:${region}:<account>:instance/${instanceId}, or a tag condition that matches it)`
        : `the job's role needs ssm:${call} (resource "*" or the command)`;
  } else if (name === 'InvalidInstanceId') {
    why = `${instanceId} is not a managed node SSM can reach in ${region}: is the instance running, in this region and account, with the SSM agent running and an instance profile that allows it (AmazonSSMManagedInstanceCore)? It must show as Online in Systems Manager → Fleet Manager`;
  } else if (name === 'InvalidDocument' || name === 'InvalidParameters') {
    why = 'SSM refused the AWS-RunShellScript document or its parameters';
  } else if (name === 'ThrottlingException' || name === 'TooManyUpdates') {
    why = "SSM kept throttling the calls (the account's Run Command rate); fewer hosts at once (max-parallel) helps";
  } else if (/ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|socket hang up|getaddrinfo/i.test(raw)) {
    why = `the SSM endpoint for ${region} is not reachable from the runner (network, proxy, or AWS_ENDPOINT_URL_SSM)`;
  } else {
    why = 'SSM failed';
  }
  return Object.assign(new Error(`SSM ${call} for ${instanceId} failed: ${why} (${raw})`), { awsName: name });
}

/** A command that ended without running our wrapper to the end: what its SSM status means. */
export function explainStatus(status: string, details: string | undefined, instanceId: string): string {
  // GetCommandInvocation's Status is coarse (TimedOut covers both timeouts): StatusDetails says which.
  switch (details && details !== status ? details : status) {
    case 'Undeliverable':
    case 'DeliveryTimedOut':
      return `the command never reached ${instanceId} (${details ?? status}): the SSM agent is offline or the instance is stopped; check it shows as Online in Systems Manager → Fleet Manager`;
    case 'ExecutionTimedOut':
    case 'TimedOut':
      return `the command on ${instanceId} ran past its executionTimeout (${details ?? status})`;
    case 'Terminated':
      return `the command on ${instanceId} was terminated (${details ?? status}): the instance may have stopped or rebooted`;
    case 'Cancelled':
    case 'Cancelling':
      return `the command on ${instanceId} was cancelled (CancelCommand)`;
    default:
      return `the command on ${instanceId} ended with status ${status}${details ? ` (${details})` : ''}`;
  }
}
