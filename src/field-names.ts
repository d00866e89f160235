/**
 * Derives a field name from a CSV header: removes accents, deletes every character that is not a
 * letter, digit, `_` or white space, turns each run of white space into one `_`, collapses
 * repeated `_`, trims `_` at both ends and lower-cases. `Quantidade de reclamações reguladas -
 * outras` becomes `quantidade_de_reclamacoes_reguladas_outras`.
 */
export function deriveFieldName(header: string): string {
  return header
    .normalize('NFD')
    .replace(/\p{M}/gu, '')
    .replace(/[^\p{L}\p{N}_\s]/gu, '')
    .trim()
    .replace(/\s+/gu, '_')
    .replace(/_+/g, '_')
    .replace(/^_+|_+$/g, '')
    .toLowerCase();
}
