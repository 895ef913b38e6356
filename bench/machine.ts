// What the figures were measured on.
import { execFileSync } from 'node:child_process';
import { cpus, release } from 'node:os';

export interface Machine {
  cpu: string;
  cores: number;
  kernel: string;
  node: string;
  date: string;
  /** other load on the machine when the run started (1-minute average) */
  loadAverage: number;
}

export function machine(): Machine {
  const list = cpus();
  let loadAverage = NaN;
  try { loadAverage = Number(execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ')[0]); } catch { /* not Linux */ }
  return { cpu: list[0]?.model.trim() ?? 'unknown', cores: list.length, kernel: release(), node: process.version, date: new Date().toISOString(), loadAverage };
}
