import { readFile } from 'node:fs/promises';
import avro from 'avsc';

export type RecordType = avro.Type;

/** Invalid or unreadable Avro schema file. */
export class SchemaLoadError extends Error {
  override name = 'SchemaLoadError';

  constructor(
    readonly schemaPath: string,
    options: { cause: unknown },
  ) {
    const reason = options.cause instanceof Error ? options.cause.message : String(options.cause);

    super(`loading Avro schema ${schemaPath} failed: ${reason}; check SCHEMA_PATH`, options);
  }
}

/** Reads an `.avsc` file and returns its record type, for encoding and decoding bodies. */
export async function loadRecordType(schemaPath: string): Promise<RecordType> {
  try {
    const schema: unknown = JSON.parse(await readFile(schemaPath, 'utf8'));
    const type = avro.Type.forSchema(schema as avro.Schema);

    if (type.typeName !== 'record') {
      throw new Error(`the top-level type is ${type.typeName}, not a record`);
    }

    return type;
  } catch (error) {
    throw new SchemaLoadError(schemaPath, { cause: error });
  }
}

/** Names of the record's fields, in schema order. */
export function fieldNames(type: RecordType): string[] {
  return (type as avro.types.RecordType).fields.map((field) => field.name);
}

/** Names of the fields whose type is a union with null. */
export function nullableFieldNames(type: RecordType): Set<string> {
  const fields = (type as avro.types.RecordType).fields;

  return new Set(
    fields
      .filter((field) => {
        const fieldType = field.type;

        return (
          fieldType.typeName === 'union:unwrapped' || fieldType.typeName === 'union:wrapped'
            ? (fieldType as avro.types.UnwrappedUnionType).types.some((t) => t.typeName === 'null')
            : false
        );
      })
      .map((field) => field.name),
  );
}
