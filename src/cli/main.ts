import { Command, CommanderError } from 'commander';
import { errorMessage, isFacestreamError } from '../errors.js';
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

/** Exit codes: 0 success, 1 a user-facing failure (bad input, no face, missing model), 2 usage error. */
export async function main(argv: string[] = process.argv): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (help, version or usage error).
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (isFacestreamError(err)) {
      process.stderr.write(`facestream: ${redactText(err.message)}\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(redactText(`facestream: unexpected error: ${errorMessage(err)}\n${err instanceof Error && err.stack ? err.stack : ''}\n`));
    process.exitCode = 1;
  }
}
