/** ECR GetAuthorizationToken on the runner with whatever AWS credentials the job has. */
import { ECRClient, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr';

export interface RegistryCredentials {
  username: string;
  password: string;
  expiresAt?: Date;
}

export async function fetchEcrToken(region: string): Promise<RegistryCredentials> {
  const client = new ECRClient({ region, maxAttempts: 3 });
  try {
    const out = await client.send(new GetAuthorizationTokenCommand({}));
    const data = out.authorizationData?.[0];
    if (!data?.authorizationToken) throw new Error('ECR returned no authorization token');
    const decoded = Buffer.from(data.authorizationToken, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new Error('ECR returned a malformed authorization token');
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), expiresAt: data.expiresAt };
  } catch (e) {
    const err = e as Error & { name: string };
    if (/CredentialsProviderError|Could not load credentials/i.test(`${err.name} ${err.message}`)) {
      throw new Error(
        `no AWS credentials on the runner for registry-auth ecr: add aws-actions/configure-aws-credentials before this step (or use registry-auth: ecr-on-host to log in with the instance role, or none) (${err.message})`
      );
    }
    throw new Error(`ECR GetAuthorizationToken in ${region} failed: ${err.name}: ${err.message}`);
  } finally {
    client.destroy();
  }
}
