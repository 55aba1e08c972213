// Starts `wfm up` on free loopback ports and reads its addresses from what it prints.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { packageRoot } from '../contract.js';

export interface Stack {
  page: string;
  mediabar: string;
  output(): string;
  stop(): Promise<void>;
}

export function wfmBinary(): string {
  const root = packageRoot();
  if (process.env.WFM_BIN) return resolve(root, process.env.WFM_BIN);
  for (const profile of ['release', 'debug']) {
    const candidate = join(root, '..', '..', 'target', profile, 'wfm');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('no wfm binary: build it (cargo build --release -p wfm) or set WFM_BIN');
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startStack(timeoutMs = 60_000): Promise<Stack> {
  const binary = wfmBinary();
  if (!existsSync(binary)) throw new Error(`no wfm binary at ${binary}`);
  const child = spawn(binary, ['up', '--manager-listen', '127.0.0.1:0', '--gateway-listen', '127.0.0.1:0', '--agents', '1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  running.add(child);
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    }
    running.delete(child);
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const page = /^\s+demo page\s+(http:\/\/\S+)/m.exec(output)?.[1];
    const mediabar = /^\s+MediaBar WebSocket\s+(ws:\/\/\S+)/m.exec(output)?.[1];
    if (page && mediabar) return { page, mediabar, output: () => output, stop };
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`wfm up did not print its addresses (${child.exitCode === null ? 'timed out' : `exit ${child.exitCode}`}):\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
