# Build stage: install every dependency, compile TypeScript, then drop the development ones.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY sql ./sql
COPY schemas ./schemas
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

# Runtime stage: compiled code, production dependencies, SQL, schema and the demo sample.
FROM node:22-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
# V8 puts off full garbage collection while its heap has room, so without a limit the heap
# grows far past the tool's small live set under load. This limit keeps ingest near 150 MB of
# RSS at the same rate (BENCHMARKS.md, Memory).
ENV NODE_OPTIONS=--max-old-space-size=192
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY sql ./sql
COPY schemas ./schemas
COPY samples ./samples
# Export builds its Parquet file under TMPDIR; the demo writes its copy to ./demo-output.
ENV TMPDIR=/tmp
RUN mkdir /app/demo-output && chown node:node /app/demo-output
USER node
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["run"]
