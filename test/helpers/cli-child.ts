// Runs the zofo CLI from its TypeScript source (tests spawn it with tap's loader).
import { main } from '../../lib/cli/main.js';

await main(process.argv);
