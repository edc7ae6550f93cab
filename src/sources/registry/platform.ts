import { badInput } from '../../errors.js';

/** The platform to pick from a manifest list / index: Go's architecture names, as registries use them. */
const GO_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le', // Node reports little-endian ppc64 as ppc64; big-endian Linux on Power is gone
  s390x: 's390x',
  riscv64: 'riscv64',
  mips: 'mips',
  mipsel: 'mipsle',
  loong64: 'loong64',
};

/** `TransportOptions.architecture`, else this node's architecture in Go's words. */
export function wantedArchitecture(requested: string | undefined, nodeArch: string = process.arch): string {
  if (requested) return requested;
  return GO_ARCH[nodeArch] ?? nodeArch;
}

/**
 * When an architecture was asked for, the image's config must not name another one: a list offers
 * a choice, but a single-platform image is whatever it is, and a VM would boot a disk built for
 * the wrong machine (CDI's validateImagePlatformMatch). A config that names none is let through.
 */
export function checkArchitecture(configArchitecture: unknown, requested: string | undefined, display: string): void {
  if (!requested || typeof configArchitecture !== 'string' || configArchitecture === '' || configArchitecture === requested) return;
  throw badInput(
    `${display}: manifest image architecture "${configArchitecture}" doesn't match the requested architecture "${requested}" (--arch, IMPORTER_REGISTRY_IMAGE_ARCHITECTURE in a pod): use an image built for ${requested}`,
  );
}
