// Preloaded into a CLI child (NODE_OPTIONS="--require <this file>") by tests that bound the
// child's memory: on exit, the main thread writes the process's peak resident set size
// (getrusage ru_maxrss, the figure /usr/bin/time -v prints, in KiB) as the last line of stderr.
const { isMainThread } = require('node:worker_threads');

if (isMainThread) {
  process.on('exit', () => {
    process.stderr.write(`\npeak-rss-kib=${process.resourceUsage().maxRSS}\n`);
  });
}
