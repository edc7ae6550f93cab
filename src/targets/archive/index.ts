/** The archive content type (SPEC §6): safe streaming extraction of a tar into a directory. */
export { extractArchive, type ArchiveExtractOptions, type ArchiveResult } from './extract-archive.js';
