import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadRecordType, type RecordType } from '../src/avro.ts';
import { BUNDLED_SCHEMA_PATH } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import type { SqsBatchEntry } from '../src/sinks/sqs-send.ts';
import { createComplaintCsvSource } from '../src/sources/complaint-csv.ts';
import { AvroEncodeError, createAvroEncodeTransform } from '../src/transforms/avro-encode.ts';

const producerSchemaPath = fileURLToPath(
  new URL('../../shared/schemas/reclamacoes.avsc', import.meta.url),
);
const skipWithoutProducerSchema = existsSync(producerSchemaPath)
  ? false
  : `producers' schema not found at ${producerSchemaPath}`;
const samplePath = fileURLToPath(
  new URL('../samples/reclamacoes/2023_tri_01.csv', import.meta.url),
);

const FULL_RECORD = {
  ano: '2023',
  trimestre: '1º',
  categoria: 'Demais Bancos, Financeiras e Instituições de Pagamento',
  tipo: 'Banco/financeira',
  cnpj_if: '9988776',
  instituicao_financeira: 'FINANCEIRA CAJU LTDA.',
  indice: '5.501,06',
  quantidade_de_reclamacoes_reguladas_procedentes: '27',
  quantidade_de_reclamacoes_reguladas_outras: '11',
  quantidade_de_reclamacoes_nao_reguladas: '0',
  quantidade_total_de_reclamacoes: '38',
  quantidade_total_de_clientes_ccs_e_scr: '113623',
  quantidade_de_clientes_ccs: '61778',
  quantidade_de_clientes_scr: '74135',
};

const NULL_RECORD = {
  ...FULL_RECORD,
  cnpj_if: null,
  quantidade_de_reclamacoes_reguladas_outras: null,
  quantidade_de_reclamacoes_nao_reguladas: null,
  quantidade_de_clientes_ccs: null,
  quantidade_de_clientes_scr: null,
};

let recordType: RecordType;

before(async () => {
  recordType = await loadRecordType(BUNDLED_SCHEMA_PATH);
});

async function encodeAll(records: unknown[]): Promise<SqsBatchEntry[]> {
  return Readable.from(records).compose(createAvroEncodeTransform({ recordType })).toArray();
}

function decodeBody(type: RecordType, body: string): unknown {
  return { ...(type.fromBuffer(Buffer.from(body, 'base64')) as object) };
}

describe('Avro encode transform', () => {
  test('body decodes back to the record', async () => {
    const [entry] = await encodeAll([FULL_RECORD]);

    assert.ok(entry);
    assert.deepEqual(decodeBody(recordType, entry.MessageBody), FULL_RECORD);
  });

  test('null unions decode back to null', async () => {
    const [entry] = await encodeAll([NULL_RECORD]);

    assert.ok(entry);
    assert.deepEqual(decodeBody(recordType, entry.MessageBody), NULL_RECORD);
  });

  test('body is the schemaless binary encoding in base64', async () => {
    const [entry] = await encodeAll([FULL_RECORD]);

    assert.equal(entry?.MessageBody, recordType.toBuffer(FULL_RECORD).toString('base64'));
    assert.match(entry?.MessageBody ?? '', /^[A-Za-z0-9+/]+={0,2}$/);
  });

  test('entry ids count records from 1', async () => {
    const entries = await encodeAll([FULL_RECORD, NULL_RECORD, FULL_RECORD]);

    assert.deepEqual(
      entries.map((entry) => entry.Id),
      ['1', '2', '3'],
    );
  });

  test('null in required field fails', async () => {
    const record = { ...FULL_RECORD, instituicao_financeira: null };

    await assert.rejects(encodeAll([FULL_RECORD, record]), (error: unknown) => {
      assert.ok(error instanceof AvroEncodeError);
      assert.equal(error.entryId, '2');
      assert.deepEqual(error.invalidFields, ['instituicao_financeira']);
      assert.match(error.message, /^encoding record 2 failed: field instituicao_financeira/);
      assert.match(error.message, /value null \(null\), expected "string"/);

      return true;
    });
  });

  test('wrong types fail naming each field', async () => {
    const record = { ...FULL_RECORD, ano: 2023, cnpj_if: 9988776 };

    await assert.rejects(encodeAll([record]), (error: unknown) => {
      assert.ok(error instanceof AvroEncodeError);
      assert.deepEqual(error.invalidFields, ['ano', 'cnpj_if']);
      assert.match(error.message, /field cnpj_if has value 9988776 \(number\)/);

      return true;
    });
  });

  test('missing required field fails', async () => {
    const { indice: _indice, ...record } = FULL_RECORD;

    await assert.rejects(encodeAll([record]), (error: unknown) => {
      assert.ok(error instanceof AvroEncodeError);
      assert.deepEqual(error.invalidFields, ['indice']);
      assert.match(error.message, /field indice has no value/);

      return true;
    });
  });
});

describe('Avro encode transform, producers schema', { skip: skipWithoutProducerSchema }, () => {
  test('sample rows decode with the producers schema', async () => {
    const producerType = await loadRecordType(producerSchemaPath);
    const logger = createLogger('silent');
    const records = await createComplaintCsvSource(samplePath, { recordType, logger }).toArray();
    const entries = await encodeAll(records);

    const decoded = entries.map((entry) => decodeBody(producerType, entry.MessageBody));

    assert.equal(decoded.length, 26);
    assert.deepEqual(decoded, records);
  });
});

describe('Avro encode transform stream contract', () => {
  test('works under pipeline and finishes once', async () => {
    const transform = createAvroEncodeTransform({ recordType });
    const received: SqsBatchEntry[] = [];
    let finishCount = 0;

    transform.on('finish', () => {
      finishCount += 1;
    });

    await pipeline(
      Readable.from([FULL_RECORD, NULL_RECORD]),
      transform,
      new Writable({
        objectMode: true,
        write(entry: SqsBatchEntry, _encoding, callback) {
          received.push(entry);
          callback();
        },
      }),
    );

    assert.equal(received.length, 2);
    assert.equal(finishCount, 1);
  });

  test('error fires once for an invalid record', async () => {
    const transform = createAvroEncodeTransform({ recordType });
    let errorCount = 0;

    transform.on('error', () => {
      errorCount += 1;
    });
    transform.resume();
    transform.write({ ano: 1 });
    transform.write({ ano: 2 });

    await assert.rejects(finished(transform), AvroEncodeError);
    assert.equal(errorCount, 1);
  });

  test('destroy before the first write closes the transform', async () => {
    const transform = createAvroEncodeTransform({ recordType });

    transform.destroy();

    await assert.rejects(finished(transform), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    assert.equal(transform.destroyed, true);
  });
});
