// Preloaded into each CLI process the fuzzer starts (node --import): writes the process's peak resident
// memory (KiB, getrusage's ru_maxrss: JS heap and native allocations alike) to XLLAMA_FUZZ_RSS_FILE on exit.
import { writeFileSync } from 'node:fs';

const file = process.env.XLLAMA_FUZZ_RSS_FILE;
if (file) {
  process.on('exit', () => {
    try {
      writeFileSync(file, String(process.resourceUsage().maxRSS));
    } catch {
      // The watchdog's own /proc readings stand in.
    }
  });
}
