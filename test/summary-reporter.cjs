// After Jest's own summary, prints one plain closing line ("Tests: N passed, N failed, N skipped")
// that any log reader can parse. It is written at process exit so it is the last line of the run.
class PlainSummaryReporter {
  onRunComplete(_contexts, results) {
    const { numPassedTests: p, numFailedTests: f, numPendingTests: s, numTodoTests: t } = results;
    const brokenSuites = results.numRuntimeErrorTestSuites;
    const line = `Tests: ${p} passed, ${f + brokenSuites} failed, ${s + t} skipped\n`;
    process.once('exit', () => process.stdout.write(line));
  }
}
module.exports = PlainSummaryReporter;
