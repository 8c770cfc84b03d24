import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FacestreamError } from '../errors.js';

export const LOCK_FILE = 'gallery.lock';

/** A process's start time in clock ticks since boot (Linux /proc), to tell a reused pid from the lock's owner. */
function startTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) is in parentheses and may contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function alive(pid: number, started: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // Same pid but another start time: the owner died and the pid was reused.
  const now = started ? startTime(pid) : undefined;
  return !(started && now && now !== started);
}

/**
 * One writer per gallery directory: the in-memory search index of a second writer would go
 * stale. The lock file holds the owner's pid, host and start time; a lock left by a process that
 * died (a crash, SIGKILL) is taken over, since SQLite itself recovers from the crash.
 */
export class DirectoryLock {
  private constructor(private readonly file: string) {}

  static acquire(dir: string): DirectoryLock {
    const file = path.join(dir, LOCK_FILE);
    const me = `${process.pid} ${os.hostname()} ${startTime(process.pid) ?? ''}`.trim() + '\n';
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        fs.writeFileSync(file, me, { flag: 'wx' });
        return new DirectoryLock(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let owner = '';
      try {
        owner = fs.readFileSync(file, 'utf8');
      } catch {
        continue; // removed meanwhile: try again
      }
      const [pidText, host, started] = owner.trim().split(' ');
      const pid = Number(pidText);
      const sameHost = !host || host === os.hostname();
      if (Number.isInteger(pid) && pid > 0 && sameHost && alive(pid, started)) {
        throw new FacestreamError('GALLERY_LOCKED', `gallery ${dir} is in use by process ${pid}${pid === process.pid ? ' (this process)' : ''}; stop it or open the gallery read-only`, { dir, pid });
      }
      if (!sameHost) throw new FacestreamError('GALLERY_LOCKED', `gallery ${dir} is locked by process ${pid} on host ${host}`, { dir, pid, host });
      // The owner is gone: remove its lock and retry the exclusive create (another process may win the race).
      try {
        fs.unlinkSync(file);
      } catch {
        /* someone else took it over first */
      }
    }
    throw new FacestreamError('GALLERY_LOCKED', `gallery ${dir}: could not take the lock ${file}`, { dir });
  }

  release(): void {
    try {
      fs.unlinkSync(this.file);
    } catch {
      /* already gone */
    }
  }
}
