// The app's release name, shown by the page and the API. The benchmark's "code only"
// change edits this file (package.json's version is in the lockfile too: changing it
// would change the dependencies' identity).
export const RELEASE = 'r1';
// The benchmark's broken commit sets this to true: /api/health then answers 500.
export const BROKEN = false;
