import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import convict from 'convict';

/** The message schema shipped with the package, used when `SCHEMA_PATH` is not set. */
export const BUNDLED_SCHEMA_PATH = packagePath('schemas/reclamacoes.avsc');

/** SQS returns at most 10 messages per ReceiveMessage and takes at most 10 entries per batch call. */
export const SQS_MAX_BATCH_ENTRIES = 10;

/** SQS long polling waits at most 20 seconds. */
export const SQS_MAX_WAIT_SECONDS = 20;

/** SQS caps a message's visibility timeout at 12 hours. */
export const SQS_MAX_VISIBILITY_SECONDS = 12 * 60 * 60;

/** S3 rejects multipart parts smaller than 5 MiB, except the last one. */
export const S3_MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;

const PIPELINE_NAMES = ['ingest', 'export'] as const;

export type PipelineName = (typeof PIPELINE_NAMES)[number];

/**
 * Resolves a path inside the installed package. This module runs from `src/` under tsx and
 * from `dist/src/` after the build, so the package root is one or two levels up.
 */
export function packagePath(relativePath: string): string {
  const here = new URL('.', import.meta.url);
  const root = here.pathname.endsWith('/dist/src/') ? new URL('../../', here) : new URL('../', here);

  return fileURLToPath(new URL(relativePath, root));
}

function positiveInteger(name: string, maximum = Number.MAX_SAFE_INTEGER) {
  return {
    name,
    validate(value: unknown) {
      if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > maximum) {
        throw new Error(`must be an integer from 1 to ${maximum}`);
      }
    },
    coerce: (value: unknown) => (typeof value === 'string' ? Number(value) : value),
  };
}

convict.addFormat(positiveInteger('positive-int'));
convict.addFormat(positiveInteger('visibility-seconds', SQS_MAX_VISIBILITY_SECONDS));
convict.addFormat({
  name: 'readable-file',
  validate(value: unknown) {
    try {
      accessSync(String(value), constants.R_OK);
    } catch {
      throw new Error('must name a readable file');
    }

    if (!statSync(String(value)).isFile()) {
      throw new Error('must name a file, not a folder');
    }
  },
});
convict.addFormat({
  name: 'postgres-url',
  validate(value: unknown) {
    if (value === '') {
      return;
    }

    const isPostgresUrl = URL.canParse(String(value)) && /^postgres(ql)?:$/.test(new URL(String(value)).protocol);

    if (!isPostgresUrl) {
      throw new Error('must be a URL such as postgres://user:password@host:5432/database');
    }
  },
});
convict.addFormat({
  name: 'memory-size',
  validate(value: unknown) {
    if (!/^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i.test(String(value))) {
      throw new Error('must be a size such as 256MB or 1GB');
    }
  },
});
convict.addFormat({
  name: 'key-prefix',
  validate(value: unknown) {
    if (String(value).startsWith('/')) {
      throw new Error('must not start with /, because S3 keys are relative to the bucket');
    }
  },
  // A prefix names a folder, so `exports` means `exports/`.
  coerce: (value: unknown) => {
    const prefix = String(value);

    return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
  },
});
convict.addFormat(positiveInteger('tcp-port', 65535));
convict.addFormat({
  name: 'non-negative-int',
  validate(value: unknown) {
    if (!Number.isInteger(value) || (value as number) < 0) {
      throw new Error('must be an integer of 0 or more');
    }
  },
  coerce: (value: unknown) => (typeof value === 'string' ? Number(value) : value),
});
convict.addFormat({
  name: 'optional-url',
  validate(value: unknown) {
    if (value === '' || value === null) {
      return;
    }

    try {
      new URL(String(value));
    } catch {
      throw new Error('must be an absolute URL such as http://127.0.0.1:4566');
    }
  },
});
convict.addFormat({
  name: 'pipeline-list',
  validate(value: unknown) {
    const names = value as string[];
    const unknownNames = names.filter((name) => !PIPELINE_NAMES.includes(name as PipelineName));

    if (names.length === 0 || unknownNames.length > 0) {
      throw new Error(`must be a comma-separated list of ${PIPELINE_NAMES.join(', ')}`);
    }
  },
  coerce: (value: unknown) => parsePipelineList(String(value)),
});

/** Splits a comma-separated pipeline list such as `ingest,export`. */
export function parsePipelineList(text: string): string[] {
  return text
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
}

const schema = {
  postgres: {
    host: {
      doc: 'PostgreSQL host name or address.',
      format: String,
      default: 'localhost',
      env: 'POSTGRES_HOST',
    },
    port: {
      doc: 'PostgreSQL TCP port.',
      format: 'tcp-port',
      default: 5432,
      env: 'POSTGRES_PORT',
    },
    user: {
      doc: 'PostgreSQL role to connect as.',
      format: String,
      default: 'postgres',
      env: 'POSTGRES_USER',
    },
    password: {
      doc: 'Password of POSTGRES_USER; empty for trust or peer authentication.',
      format: String,
      default: '',
      env: 'POSTGRES_PASSWORD',
      sensitive: true,
    },
    database: {
      doc: 'Database that holds the events and trusted schemas.',
      format: String,
      default: 'postgres',
      env: 'DB_NAME',
    },
    url: {
      doc: 'Connection string; when set it replaces the five POSTGRES_* and DB_NAME values.',
      format: 'postgres-url',
      default: '',
      env: 'DATABASE_URL',
      sensitive: true,
    },
    connectTimeoutSeconds: {
      doc: 'Seconds a new PostgreSQL connection may take before the attempt fails.',
      format: 'positive-int',
      default: 10,
      env: 'POSTGRES_CONNECT_TIMEOUT_SECONDS',
    },
    startupWaitSeconds: {
      doc:
        'Seconds a command waits at start for PostgreSQL to accept connections. It retries ' +
        'refused connections, a server still starting and a host name not yet known. 0 tries once.',
      format: 'non-negative-int',
      default: 60,
      env: 'POSTGRES_STARTUP_WAIT_SECONDS',
    },
  },
  aws: {
    region: {
      doc: 'AWS region of the queue and the bucket.',
      format: String,
      default: 'us-east-1',
      env: 'AWS_DEFAULT_REGION',
    },
    accessKeyId: {
      doc: 'Access key; when unset the SDK default credential chain applies.',
      format: String,
      default: '',
      env: 'AWS_ACCESS_KEY_ID',
    },
    secretAccessKey: {
      doc: 'Secret key that goes with AWS_ACCESS_KEY_ID.',
      format: String,
      default: '',
      env: 'AWS_SECRET_ACCESS_KEY',
      sensitive: true,
    },
    endpointUrl: {
      doc: 'One endpoint for SQS and S3, for emulators; S3 then uses path-style addressing.',
      format: 'optional-url',
      default: '',
      env: 'AWS_ENDPOINT_URL',
    },
  },
  sqs: {
    queueUrl: {
      doc: 'URL of the queue that carries the Avro messages.',
      format: 'optional-url',
      default: '',
      env: 'SQS_QUEUE_URL',
    },
    receiveConcurrency: {
      doc: 'ReceiveMessage calls kept in flight at once, and DeleteMessageBatch calls likewise.',
      format: 'positive-int',
      default: 8,
      env: 'SQS_RECEIVE_CONCURRENCY',
    },
    waitTimeSeconds: {
      doc: 'Long-poll wait of each ReceiveMessage, 0 to 20 seconds.',
      format: 'non-negative-int',
      default: SQS_MAX_WAIT_SECONDS,
      env: 'SQS_WAIT_TIME_SECONDS',
    },
    visibilityTimeoutSeconds: {
      doc: 'Visibility timeout requested on receive, up to 43200; extended while a batch is stored.',
      format: 'visibility-seconds',
      default: 60,
      env: 'SQS_VISIBILITY_TIMEOUT_SECONDS',
    },
    sendConcurrency: {
      doc: 'SendMessageBatch calls kept in flight at once by the produce command.',
      format: 'positive-int',
      default: 8,
      env: 'SQS_SEND_CONCURRENCY',
    },
  },
  s3: {
    bucket: {
      doc: 'Bucket that receives the delivery files.',
      format: String,
      default: '',
      env: 'S3_BUCKET_NAME',
    },
    prefix: {
      doc: 'Key prefix put before delivery/..., for example exports/.',
      format: 'key-prefix',
      default: '',
      env: 'S3_PREFIX',
    },
    partSizeBytes: {
      doc: 'Multipart upload part size in bytes, at least 5 MiB.',
      format: 'positive-int',
      default: 8 * 1024 * 1024,
      env: 'S3_PART_SIZE_BYTES',
    },
    uploadConcurrency: {
      doc: 'Parts uploaded at once.',
      format: 'positive-int',
      default: 4,
      env: 'S3_UPLOAD_CONCURRENCY',
    },
  },
  ingest: {
    schemaPath: {
      doc: 'Avro schema (.avsc) of the message bodies.',
      format: 'readable-file',
      default: BUNDLED_SCHEMA_PATH,
      env: 'SCHEMA_PATH',
    },
    batchSize: {
      doc: 'Messages written by one COPY transaction at most.',
      format: 'positive-int',
      default: 1000,
      env: 'COPY_BATCH_SIZE',
    },
    batchMaxBytes: {
      doc:
        'Size of the message bodies of one COPY batch at most, in bytes of the base64 text as ' +
        'received. A batch closes at COPY_BATCH_SIZE messages or at this size, whichever comes first.',
      format: 'positive-int',
      default: 4 * 1024 * 1024,
      env: 'COPY_BATCH_MAX_BYTES',
    },
    batchMaxAgeMs: {
      doc: 'Milliseconds a partial batch waits for more messages before it is written.',
      format: 'positive-int',
      default: 250,
      env: 'COPY_BATCH_MAX_AGE_MS',
    },
    copyConnections: {
      doc: 'Batches written at once, each on its own PostgreSQL connection.',
      format: 'positive-int',
      default: 2,
      env: 'COPY_CONNECTIONS',
    },
    shutdownGraceSeconds: {
      doc: 'Seconds in-flight batches get to finish after SIGTERM before they are released.',
      format: 'positive-int',
      default: 15,
      env: 'SHUTDOWN_GRACE_SECONDS',
    },
  },
  export: {
    intervalSeconds: {
      doc: 'Seconds between two scheduled exports in the run command.',
      format: 'positive-int',
      default: 60,
      env: 'EXPORT_INTERVAL_SECONDS',
    },
    queryPath: {
      doc: 'SQL file of the delivery query.',
      format: 'readable-file',
      default: packagePath('sql/delivery.sql'),
      env: 'DELIVERY_QUERY_PATH',
    },
    cursorBatchRows: {
      doc: 'Rows fetched from the PostgreSQL cursor per round trip.',
      format: 'positive-int',
      default: 1000,
      env: 'EXPORT_CURSOR_BATCH_ROWS',
    },
    rowGroupRows: {
      doc: 'Rows per Parquet row group. DuckDB buffers a row group in memory while it writes it.',
      format: 'positive-int',
      default: 61_440,
      env: 'PARQUET_ROW_GROUP_ROWS',
    },
    duckdbMemoryLimit: {
      doc: 'DuckDB memory_limit while the Parquet file is built; beyond it DuckDB spills to disk.',
      format: 'memory-size',
      default: '96MB',
      env: 'DUCKDB_MEMORY_LIMIT',
    },
  },
  pipelines: {
    doc: 'Pipelines the run command starts: ingest, export or both.',
    format: 'pipeline-list',
    default: ['ingest', 'export'],
    env: 'PIPELINES',
  },
  logLevel: {
    doc: 'Log level: fatal, error, warn, info, debug, trace or silent.',
    format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    default: 'info',
    env: 'LOG_LEVEL',
  },
};

/** Settings of every command, read from the environment and `.env`. */
export type Config = {
  postgres: {
    host: string;
    port: number;
    user: string;
    password: string;
    database: string;
    url: string;
    connectTimeoutSeconds: number;
    startupWaitSeconds: number;
  };
  aws: { region: string; accessKeyId: string; secretAccessKey: string; endpointUrl: string };
  sqs: {
    queueUrl: string;
    receiveConcurrency: number;
    waitTimeSeconds: number;
    visibilityTimeoutSeconds: number;
    sendConcurrency: number;
  };
  s3: { bucket: string; prefix: string; partSizeBytes: number; uploadConcurrency: number };
  ingest: {
    schemaPath: string;
    batchSize: number;
    batchMaxBytes: number;
    batchMaxAgeMs: number;
    copyConnections: number;
    shutdownGraceSeconds: number;
  };
  export: {
    intervalSeconds: number;
    queryPath: string;
    cursorBatchRows: number;
    rowGroupRows: number;
    duckdbMemoryLimit: string;
  };
  pipelines: PipelineName[];
  logLevel: string;
};

/** Invalid or missing configuration; the message names the variable and the fix. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type SchemaLeaf = { env: string; doc: string; default: unknown; sensitive?: boolean };

function collectLeaves(node: object, prefix = ''): Map<string, SchemaLeaf> {
  const leaves = new Map<string, SchemaLeaf>();

  for (const [key, value] of Object.entries(node)) {
    const path = prefix === '' ? key : `${prefix}.${key}`;

    if ('env' in value) {
      leaves.set(path, value as SchemaLeaf);
    } else {
      for (const [childPath, leaf] of collectLeaves(value, path)) {
        leaves.set(childPath, leaf);
      }
    }
  }

  return leaves;
}

/** Lists every setting with its environment variable, description and default, for help. */
export function describeSettings(): SchemaLeaf[] {
  return [...collectLeaves(schema).values()];
}

/**
 * Reads `.env` from the working directory (variables already in the environment win), then
 * validates every setting. Throws ConfigError naming the variable on the first invalid value.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, envFile = '.env'): Config {
  if (env === process.env && existsSync(envFile)) {
    process.loadEnvFile(envFile);
  }

  const leaves = collectLeaves(schema);
  // An empty variable counts as unset, so `DB_NAME=` falls back to the default instead of to
  // whatever an empty value means to the library that reads it.
  const presentEnv = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
  const config = convict(schema, { env: presentEnv, args: [] });

  try {
    config.validate({ allowed: 'strict' });
  } catch (error) {
    throw toConfigError(error as Error, leaves, env);
  }

  const loaded = config.getProperties() as Config;

  if (loaded.s3.partSizeBytes < S3_MIN_PART_SIZE_BYTES) {
    throw new ConfigError(
      `invalid S3_PART_SIZE_BYTES "${loaded.s3.partSizeBytes}": S3 requires at least ` +
        `${S3_MIN_PART_SIZE_BYTES} bytes (5 MiB); raise the value or unset it`,
    );
  }

  if (loaded.sqs.waitTimeSeconds > SQS_MAX_WAIT_SECONDS) {
    throw new ConfigError(
      `invalid SQS_WAIT_TIME_SECONDS "${loaded.sqs.waitTimeSeconds}": SQS long polling waits ` +
        `0 to ${SQS_MAX_WAIT_SECONDS} seconds; set a value in that range`,
    );
  }

  return loaded;
}

function toConfigError(
  error: Error,
  leaves: Map<string, SchemaLeaf>,
  env: NodeJS.ProcessEnv,
): ConfigError {
  const firstLine = error.message.split('\n')[0] ?? error.message;
  const match = /^([\w.]+): (.*?)(?:: value was .*)?$/.exec(firstLine);
  const leaf = match ? leaves.get(match[1] ?? '') : undefined;

  if (!match || !leaf) {
    return new ConfigError(`invalid configuration: ${firstLine}`);
  }

  // A secret such as a connection string with a password is never echoed.
  const shownValue = leaf.sensitive ? '(value hidden)' : `"${env[leaf.env] ?? ''}"`;

  return new ConfigError(
    `invalid ${leaf.env} ${shownValue}: ${match[2]}; fix it in the environment or in .env`,
  );
}

/** Throws a ConfigError when a setting that the command needs is empty. */
export function requireSetting(value: string, variable: string, example: string): string {
  if (value === '') {
    throw new ConfigError(`missing ${variable}: set it in the environment or in .env, e.g. ${example}`);
  }

  return value;
}
