# The importer image: a drop-in for CDI's importer image (SPEC §4). CDI runs it with the
# importer environment and volumes; with no arguments (or only klog flags such as -v=1) the
# binary runs pod mode. The local CLI is in the same image: `docker run IMAGE import --help`.
#
#   docker build -t cdi-importer .
#
# test/docker-install.test.ts runs the same install steps without a Docker engine.
ARG NODE_IMAGE=node:20-bookworm-slim

# Compilers and liblzma headers for the native modules (node-liblzma against the system
# liblzma, zstd-napi). Only the build stages have them.
FROM ${NODE_IMAGE} AS toolchain
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ pkg-config liblzma-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# Our own native module (the copy between local files), an optional dependency that npm ci builds
# in place and links into node_modules.
COPY native ./native

# The build: all dependencies, then tsc (a type error fails the image build) and the bundle
# (scripts/bundle.mjs: one CommonJS file, which starts faster than the ES modules).
FROM toolchain AS build
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
# The build ends with a run of the demo import through bin/, which leaves the V8 code cache
# beside the bundle (the same Node as the runtime stage, so V8 accepts it).
COPY bin ./bin
COPY fixtures ./fixtures
RUN npm run build

# Production dependencies only, native modules compiled here.
FROM toolchain AS production-deps
RUN npm ci --omit=dev \
 && npm cache clean --force

FROM ${NODE_IMAGE}
# liblzma5: node-liblzma links the system library. util-linux: blockdev (block volume size)
# and fallocate (preallocation), which the importer runs. ca-certificates: the system CAs that
# IMPORTER_CERT_DIR adds to.
RUN apt-get update \
 && apt-get install -y --no-install-recommends liblzma5 util-linux ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json ./
COPY bin ./bin
COPY --from=production-deps /src/node_modules ./node_modules
COPY --from=production-deps /src/native/file-copy/package.json /src/native/file-copy/index.js ./native/file-copy/
COPY --from=production-deps /src/native/file-copy/build/Release/file_copy.node ./native/file-copy/build/Release/
# The bundle is the whole program (bin/ loads only it, with its code cache); tsc's per-module output stays behind.
COPY --from=build /src/dist/cdi-importer.cjs /src/dist/cdi-importer.cjs.map /src/dist/cdi-importer.code-cache ./dist/
ENV NODE_ENV=production
# CDI runs its importer pods as uid 107 (non-root); the progress metric is served on 8443.
USER 107:107
EXPOSE 8443
ENTRYPOINT ["/app/bin/cdi-importer"]
