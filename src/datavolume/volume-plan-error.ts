import { ImportError } from '../errors.js';

/**
 * A volume the plan refuses: the refusal, and the volume's name for the --json failure object.
 * In a file of its own: the datavolume command needs it for every run of the CLI (commands are
 * registered at start-up), and plan-imports.ts brings the YAML parser, ~45 ms to load, which only
 * a datavolume run needs.
 */
export class VolumePlanError extends ImportError {
  constructor(
    readonly volume: string,
    refusal: ImportError,
  ) {
    super(refusal.category, refusal.message, { cause: refusal });
  }
}
