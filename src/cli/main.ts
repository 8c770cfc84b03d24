import { Command, CommanderError } from 'commander';
import { errorMessage, isFacestreamError } from '../errors.js';
import { sqliteDamage } from '../index/store.js';
import { redactText } from '../redact.js';
import { analyzeCommand } from './commands/analyze.js';
import { detectCommand } from './commands/detect.js';
import { embedCommand } from './commands/embed.js';
import { enrollDirCommand } from './commands/enroll-dir.js';
import { enrollCommand } from './commands/enroll.js';
import { evalCommand } from './commands/eval.js';
import { evalPairsCommand } from './commands/eval-pairs.js';
import { galleryCommand } from './commands/gallery.js';
import { identifyCommand } from './commands/identify.js';
import { modelsCommand } from './commands/models.js';
import { verifyCommand } from './commands/verify.js';
import { runCommand } from './commands/run.js';
import { serveCommand } from './commands/serve.js';
import { addGlobalOptions } from './context.js';

export function buildProgram(): Command {
  const program = addGlobalOptions(new Command('facestream'))
    .description('real-time face recognition for video streams: detection (MTCNN), embeddings, age/gender, gallery, live server')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();
  for (const cmd of [detectCommand(), embedCommand(), verifyCommand(), analyzeCommand(), modelsCommand(), evalPairsCommand(), enrollCommand(), enrollDirCommand(), identifyCommand(), galleryCommand(), evalCommand(), runCommand(), serveCommand()]) {
    program.addCommand(cmd.exitOverride());
  }
  return program;
}

/**
 * A reader that goes away (`facestream run ... | head`) is the normal end of a pipeline, not a
 * crash: on EPIPE the command exits at once with the status so far (what Unix tools do on SIGPIPE,
 * which Node ignores), instead of an unhandled 'error' event and its stack trace.
 */
function exitWhenStdoutCloses(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  });
}

/**
 * An operating-system error about a path the user gave (`--draw /no/such/dir/x.png`, a full disk,
 * a read-only folder): Node's message already names the error and the path
 * ("ENOENT: no such file or directory, open '/no/such/dir/x.png'").
 */
function pathSystemError(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const { code, path } = err as NodeJS.ErrnoException;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code) && typeof path === 'string' ? err.message : undefined;
}

/** Exit codes: 0 success, 1 a user-facing failure (bad input, no face, missing model), 2 usage error. */
export async function main(argv: string[] = process.argv): Promise<void> {
  const program = buildProgram();
  exitWhenStdoutCloses();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (help, version or usage error).
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    // A damaged gallery database read after opening (a bad page under one row) is a user-facing error too.
    const damage = sqliteDamage(err);
    if (damage) {
      process.stderr.write(`facestream: the gallery database is damaged (sqlite: ${damage}); run \`facestream gallery check --repair\`\n`);
      process.exitCode = 1;
      return;
    }
    const systemError = pathSystemError(err);
    if (isFacestreamError(err) || systemError) {
      process.stderr.write(`facestream: ${redactText(systemError ?? errorMessage(err))}\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(redactText(`facestream: unexpected error: ${errorMessage(err)}\n${err instanceof Error && err.stack ? err.stack : ''}\n`));
    process.exitCode = 1;
  }
}
