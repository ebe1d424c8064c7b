/**
 * Worker thread of openSafetensors for large headers: parses and checks one header
 * (safetensors-header.ts) off the main thread, so a big or hostile header never blocks
 * the event loop. Receives { file, header, dataLength }; answers { tensors, metadata }
 * or { error: { code, message } }.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ZofoError } from '../errors.js';
import { parseHeader } from './safetensors-header.js';

const { file, header, dataLength } = workerData as { file: string; header: Uint8Array; dataLength: number };
try {
  const { tensors, metadata } = parseHeader(file, header, dataLength);
  parentPort?.postMessage({ tensors: [...tensors], metadata });
} catch (err) {
  const code = err instanceof ZofoError ? err.code : 'ZOFO_BAD_FILE';
  parentPort?.postMessage({ error: { code, message: err instanceof Error ? err.message : String(err) } });
}
