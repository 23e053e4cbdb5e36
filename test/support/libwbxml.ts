/**
 * Debian's libwbxml command-line tools (`xml2wbxml`, `wbxml2xml`), the independent WBXML oracle of
 * the tests. A missing binary fails the test with an install hint: oracle tests are never skipped.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Runs a libwbxml tool in `cwd`; a missing binary (ENOENT) or a non-zero exit fails the test. */
export async function libwbxml(cmd: 'xml2wbxml' | 'wbxml2xml', args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync(cmd, args, { cwd });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`${cmd} not found on PATH: install Debian's libwbxml2-utils (the oracle tests must not be skipped)`, { cause: e });
    }
    throw e;
  }
}
