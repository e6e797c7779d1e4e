// Runs a command that knows nothing of its parent (wrangler dev → workerd)
// so that it ends when the parent does, however the parent ends.
//
//   node launcher/orphan-guard.mjs COMMAND [ARGS…]   (spawned with an IPC channel)
//
// The launcher spawns each service as the leader of its own process group and
// stops it by signalling the group; if the launcher itself is killed outright
// (SIGKILL, a crash, a closed terminal before its handlers are in place) no
// one signals the group, and wrangler and workerd would keep serving, holding
// their ports. The guard sits in that group with an IPC channel to the
// launcher, used for nothing but its closing: then it sends SIGTERM to the
// command and, if the group is still there 5 s later, SIGKILL to the group.
// With SSSD_GUARD_REMOVES=DIR in its environment it also removes DIR when
// the command exits or the launcher is gone: the edge's secrets folder (the
// pool token), which the launcher's own exit handler cannot remove when the
// launcher is killed outright.
// Plain JavaScript, no tsx: nothing to load before the command starts.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [command, ...args] = process.argv.slice(2);
if (!command || !process.channel) {
  process.stderr.write('orphan-guard: usage: spawned with an IPC channel, as `node orphan-guard.mjs COMMAND [ARGS…]`\n');
  process.exit(2);
}

const { SSSD_GUARD_REMOVES: removes, ...childEnv } = process.env;
// Only a launcher's own secrets folder: an inherited or mistaken value must never turn this into `rm -rf` elsewhere.
const removable = removes && path.dirname(path.resolve(removes)) === path.resolve(os.tmpdir()) && path.basename(removes).startsWith('sssd-edge-');
if (removes && !removable) process.stderr.write(`orphan-guard: SSSD_GUARD_REMOVES=${removes} is no sssd-edge-* folder in ${os.tmpdir()}; left alone\n`);
const removeFolder = () => {
  if (!removable) return;
  try {
    rmSync(removes, { recursive: true, force: true });
  } catch {
    // Gone already, or not ours to remove: nothing more to do.
  }
};

const child = spawn(command, args, { stdio: 'inherit', env: childEnv });
child.on('error', (err) => {
  process.stderr.write(`orphan-guard: cannot start ${command}: ${err.message}\n`);
  removeFolder();
  process.exit(1);
});
child.on('exit', (code, signal) => {
  removeFolder();
  process.exit(code ?? (signal ? 1 : 0));
});

// The launcher signals the whole group, which reaches the command directly:
// the guard stays to report the command's exit instead of dying first.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => {});

process.channel.unref();
process.once('disconnect', () => {
  // The command read its secrets when it started: they need not outlive the launcher.
  removeFolder();
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  setTimeout(() => {
    try {
      process.kill(-process.pid, 'SIGKILL');
    } catch {
      process.exit(1);
    }
  }, 5000).unref();
});
