import type { RecordType } from '../../src/avro.ts';

/** Builds a complaint record of the bundled schema whose institution fields vary with `index`. */
export function complaint(
  index = 0,
  overrides: Record<string, string | null> = {},
): Record<string, string | null> {
  return {
    ano: '2021',
    trimestre: '1º',
    categoria: 'Demais Bancos, Financeiras e Instituições de Pagamento',
    tipo: 'Banco/financeira',
    cnpj_if: String(10_000 + index),
    instituicao_financeira: `BANCO TESTE ${index}`,
    indice: '1.234,56',
    quantidade_de_reclamacoes_reguladas_procedentes: '10',
    quantidade_de_reclamacoes_reguladas_outras: null,
    quantidade_de_reclamacoes_nao_reguladas: ' ',
    quantidade_total_de_reclamacoes: '12',
    quantidade_total_de_clientes_ccs_e_scr: '26230',
    quantidade_de_clientes_ccs: '24698',
    quantidade_de_clientes_scr: null,
    ...overrides,
  };
}

/** Encodes a record as a message body: base64 of the schemaless Avro binary. */
export function encodeBody(recordType: RecordType, record: object): string {
  return recordType.toBuffer(record).toString('base64');
}

/**
 * Builds the body of a valid record whose `instituicao_financeira` is padded with 'x' until
 * the body is exactly `bodyLength` characters long. Base64 comes in groups of 4 characters, so
 * `bodyLength` must be a multiple of 4.
 */
export function bodyOfLength(recordType: RecordType, bodyLength: number): string {
  const targetBytes = (bodyLength / 4) * 3;
  const encodeWithName = (nameLength: number) =>
    recordType.toBuffer(complaint(0, { instituicao_financeira: 'x'.repeat(nameLength) }));
  let nameLength = targetBytes - encodeWithName(0).length;

  // The varint length prefix of the name grows with it, so correct by the difference left.
  for (let pass = 0; pass < 3; pass += 1) {
    nameLength += targetBytes - encodeWithName(nameLength).length;
  }

  return encodeWithName(nameLength).toString('base64');
}
