import pkg from "../package.json";

// Rendered on every request, so that each answer says which release served it.
export const dynamic = "force-dynamic";

export default function Home() {
  return (
    <main>
      <p>{`hello from ${pkg.version}`}</p>
    </main>
  );
}
