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
