/** @type {import('next').NextConfig} */
module.exports = {
  // No "Powered by" header; nothing here reaches the network (NEXT_TELEMETRY_DISABLED=1 is
  // set by the documents and the benchmark).
  poweredByHeader: false,
};
