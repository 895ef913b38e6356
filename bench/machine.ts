// What the figures were measured on.
import { readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';

/**
 * The CPU vulnerabilities whose mitigations change what a call and a return
 * cost in the kernel (a BPF helper call is one of each).
 */
const CALL_MITIGATIONS = ['spectre_v2', 'retbleed', 'spec_rstack_overflow'] as const;

export interface Machine {
  cpu: string;
  cores: number;
  kernel: string;
  node: string;
  date: string;
  /** other load on the machine when the run started (1-minute average) */
  loadAverage: number;
  /** the kernel's words for CALL_MITIGATIONS (/sys/devices/system/cpu/vulnerabilities, up to the first ';'), where it has them */
  mitigations: Record<string, string>;
}

function mitigations(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of CALL_MITIGATIONS) {
    try {
      out[name] = readFileSync(`/sys/devices/system/cpu/vulnerabilities/${name}`, 'utf8').split(';')[0].trim().slice(0, 120);
    } catch { /* an older kernel, or not Linux */ }
  }
  return out;
}

export function machine(): Machine {
  const list = cpus();
  let loadAverage = NaN;
  try { loadAverage = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]); } catch { /* not Linux */ }
  return { cpu: list[0]?.model.trim() ?? 'unknown', cores: list.length, kernel: release(), node: process.version, date: new Date().toISOString(), loadAverage, mitigations: mitigations() };
}
