import { RELEASE } from '../../../lib/release';

export const dynamic = 'force-dynamic';

// A cheap dynamic answer (no database): what the benchmark's load generator requests.
export async function GET() {
  return new Response(`${process.env.GREETING || 'hello'} from ${RELEASE}\n`, {
    headers: { 'content-type': 'text/plain' },
  });
}
