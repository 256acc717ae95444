// One PostgreSQL pool per process (DATABASE_URL from the environment), kept across
// module reloads.
import pg from 'pg';

export function pool() {
  if (!globalThis.__prompthubPool) {
    globalThis.__prompthubPool = new pg.Pool({
      connectionString: process.env.DATABASE_URL,
      max: 4,
      connectionTimeoutMillis: 2000,
      statement_timeout: 2000,
    });
  }
  return globalThis.__prompthubPool;
}
