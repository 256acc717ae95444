import { RELEASE } from '../lib/release';

// Rendered per request: the greeting comes from the process environment.
export const dynamic = 'force-dynamic';

export default function Home() {
  return (
    <main>
      <h1>PromptHub</h1>
      <p id="greeting">{process.env.GREETING || 'hello'}</p>
      <p id="release">release {RELEASE}</p>
    </main>
  );
}
