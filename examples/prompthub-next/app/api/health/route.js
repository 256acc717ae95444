import { RELEASE, BROKEN } from '../../../lib/release';
import { pool } from '../../../lib/db';

export const dynamic = 'force-dynamic';

// 200 {"status":"ok",...} when PostgreSQL answers and the table the first migration
// created is there; 500 otherwise (a broken database or migration shows), and 500 on a
// commit marked BROKEN or when HEALTH_FAIL is set.
export async function GET() {
  if (BROKEN || process.env.HEALTH_FAIL) {
    return Response.json({ status: 'failing', release: RELEASE }, { status: 500 });
  }
  try {
    const { rows } = await pool().query('SELECT count(*)::int AS n FROM prompts');
    return Response.json({
      status: 'ok',
      release: RELEASE,
      prompts: rows[0].n,
      greeting: process.env.GREETING || null,
    });
  } catch (e) {
    return Response.json({ status: 'failing', release: RELEASE, error: e.code || 'db' }, { status: 500 });
  }
}
