-- The delivery report: complaint figures per institution and quarter, joined with the
-- institution's employer ratings. One row per (aggregate, employer profile) pair.
--
-- Column types map to Parquet: integer is INT32, bigint INT64, double precision DOUBLE and
-- text VARCHAR. Text is ordered and compared for "lowest" with COLLATE "C", byte by byte, so
-- that the result does not depend on the server's locale. Every ordering puts nulls last.
WITH
-- 1. Deduplicate: one message per md5_body, so that a record sent twice counts once. Keep the
--    most recently stored, and on equal created_at the greatest message_id: created_at
--    defaults to now(), the start of the transaction, so one COPY batch shares it.
--    sql/delivery-invalid-values.sql repeats this step and must stay the same.
deduplicated AS (
  SELECT DISTINCT ON (md5_body) body
  FROM events.reclamacoes_sqs_events
  ORDER BY md5_body, created_at DESC, message_id COLLATE "C" DESC
),

-- 2. Clean: trim, blank becomes null, and a value that does not parse also becomes null while
--    the record stays. sql/delivery-invalid-values.sql reports the values that did not parse.
cleaned AS (
  SELECT
    trusted.parse_int4(body ->> 'ano') AS ano,
    trusted.clean_text(body ->> 'trimestre') AS trimestre,
    trusted.clean_text(body ->> 'categoria') AS categoria,
    trusted.clean_text(body ->> 'tipo') AS tipo,
    trusted.format_cnpj(body ->> 'cnpj_if') AS cnpj,
    trusted.normalize_name(body ->> 'instituicao_financeira') AS instituicao_financeira,
    trusted.parse_br_decimal(body ->> 'indice') AS indice,
    trusted.parse_integer(body ->> 'quantidade_de_reclamacoes_reguladas_procedentes')
      AS qtd_reclamacoes_reguladas_procedentes,
    trusted.parse_integer(body ->> 'quantidade_de_reclamacoes_reguladas_outras')
      AS qtd_reclamacoes_reguladas_outras,
    trusted.parse_integer(body ->> 'quantidade_de_reclamacoes_nao_reguladas')
      AS qtd_reclamacoes_nao_reguladas,
    trusted.parse_integer(body ->> 'quantidade_total_de_clientes_ccs_e_scr')
      AS qtd_total_clientes_ccs_e_scr,
    trusted.parse_integer(body ->> 'quantidade_de_clientes_ccs') AS qtd_clientes_ccs,
    trusted.parse_integer(body ->> 'quantidade_de_clientes_scr') AS qtd_clientes_scr,
    trusted.parse_integer(body ->> 'quantidade_total_de_reclamacoes') AS qtd_total_reclamacoes
  FROM deduplicated
),

-- 3. Aggregate: the average indice and the summed counts; avg and sum skip nulls and return
--    null when every value is null. sum(bigint) returns numeric, cast back to INT64.
-- NOTE: a sum beyond the bigint range becomes null instead of failing the export.
aggregated AS (
  SELECT
    ano,
    trimestre,
    categoria,
    tipo,
    cnpj,
    instituicao_financeira,
    avg(indice) AS indice,
    trusted.numeric_to_bigint(sum(qtd_reclamacoes_reguladas_procedentes))
      AS qtd_reclamacoes_reguladas_procedentes,
    trusted.numeric_to_bigint(sum(qtd_reclamacoes_reguladas_outras))
      AS qtd_reclamacoes_reguladas_outras,
    trusted.numeric_to_bigint(sum(qtd_reclamacoes_nao_reguladas))
      AS qtd_reclamacoes_nao_reguladas,
    trusted.numeric_to_bigint(sum(qtd_total_clientes_ccs_e_scr))
      AS qtd_total_clientes_ccs_e_scr,
    trusted.numeric_to_bigint(sum(qtd_clientes_ccs)) AS qtd_clientes_ccs,
    trusted.numeric_to_bigint(sum(qtd_clientes_scr)) AS qtd_clientes_scr,
    trusted.numeric_to_bigint(sum(qtd_total_reclamacoes)) AS qtd_total_reclamacoes
  FROM cleaned
  GROUP BY ano, trimestre, categoria, tipo, cnpj, instituicao_financeira
),

-- 4a. Match each employer row with at most one bank among those with the same non-null cnpj
--     or the same non-null nome. A cnpj match, with or without the name, wins over a name-only
--     match, then the lowest bank cnpj wins, then the lowest bank nome. The bank's segmento
--     breaks the last tie, so that the choice never depends on the physical row order.
profiles AS (
  SELECT
    empregado.*,
    coalesce(bank.is_cnpj_match, false) AS is_cnpj_match,
    CASE WHEN bank.is_matched THEN bank.segmento ELSE empregado.segmento END AS profile_segmento,
    CASE WHEN bank.is_matched THEN bank.cnpj ELSE empregado.cnpj END AS profile_cnpj,
    CASE WHEN bank.is_matched THEN bank.nome ELSE empregado.nome END AS profile_nome
  FROM trusted.empregados AS empregado
  LEFT JOIN LATERAL (
    SELECT
      true AS is_matched,
      coalesce(banco.cnpj = empregado.cnpj, false) AS is_cnpj_match,
      banco.segmento,
      banco.cnpj,
      banco.nome
    FROM trusted.bancos AS banco
    WHERE banco.cnpj = empregado.cnpj OR banco.nome = empregado.nome
    ORDER BY
      is_cnpj_match DESC,
      banco.cnpj COLLATE "C" NULLS LAST,
      banco.nome COLLATE "C" NULLS LAST,
      banco.segmento COLLATE "C" NULLS LAST
    LIMIT 1
  ) AS bank ON true
),

-- 4b. Keep one profile per employer_name and profile cnpj, because an employer can appear in
--     both employer files with slightly different ratings. The highest match_percent wins, then
--     a profile matched by CNPJ, then the highest reviews_count. After that the lowest value of
--     each report column, in report order, decides, so that load order never does.
chosen_profiles AS (
  SELECT DISTINCT ON (employer_name, profile_cnpj) *
  FROM profiles
  ORDER BY
    employer_name,
    profile_cnpj,
    match_percent DESC NULLS LAST,
    is_cnpj_match DESC,
    reviews_count DESC NULLS LAST,
    culture_count NULLS LAST,
    salaries_count NULLS LAST,
    benefits_count NULLS LAST,
    employerwebsite COLLATE "C" NULLS LAST,
    employerheadquarters COLLATE "C" NULLS LAST,
    employerfounded NULLS LAST,
    employerindustry COLLATE "C" NULLS LAST,
    employerrevenue COLLATE "C" NULLS LAST,
    url COLLATE "C" NULLS LAST,
    geral NULLS LAST,
    cultura_e_valores NULLS LAST,
    diversidade_e_inclusao NULLS LAST,
    qualidade_de_vida NULLS LAST,
    alta_lideranca NULLS LAST,
    remuneracao_e_beneficios NULLS LAST,
    oportunidades_de_carreira NULLS LAST,
    recomendam_para_outras_pessoas NULLS LAST,
    perspectiva_positiva_da_empresa NULLS LAST,
    profile_segmento COLLATE "C" NULLS LAST,
    profile_nome COLLATE "C" NULLS LAST
),

-- 5. Join: one row per aggregate and profile whose cnpj is equal and not null, or whose
--    institution name equals the profile's nome. An aggregate without a profile is left out.
--    The two conditions are two joins, so that each can be a hash join instead of one nested
--    loop over every pair. The second leaves out the pairs that the first joined by cnpj.
joined AS (
  SELECT aggregated, profile
  FROM aggregated
  JOIN chosen_profiles AS profile ON aggregated.cnpj = profile.profile_cnpj
  UNION ALL
  SELECT aggregated, profile
  FROM aggregated
  JOIN chosen_profiles AS profile
    ON aggregated.instituicao_financeira = profile.profile_nome
    AND NOT coalesce(aggregated.cnpj = profile.profile_cnpj, false)
)

SELECT
  (aggregated).ano,
  (aggregated).trimestre,
  (aggregated).categoria,
  (aggregated).tipo,
  (aggregated).cnpj,
  (aggregated).instituicao_financeira,
  (aggregated).indice,
  (aggregated).qtd_reclamacoes_reguladas_procedentes,
  (aggregated).qtd_reclamacoes_reguladas_outras,
  (aggregated).qtd_reclamacoes_nao_reguladas,
  (aggregated).qtd_total_clientes_ccs_e_scr,
  (aggregated).qtd_clientes_ccs,
  (aggregated).qtd_clientes_scr,
  (aggregated).qtd_total_reclamacoes,
  (profile).employer_name,
  (profile).reviews_count,
  (profile).culture_count,
  (profile).salaries_count,
  (profile).benefits_count,
  (profile).employerwebsite,
  (profile).employerheadquarters,
  (profile).employerfounded,
  (profile).employerindustry,
  (profile).employerrevenue,
  (profile).url,
  (profile).geral,
  (profile).cultura_e_valores,
  (profile).diversidade_e_inclusao,
  (profile).qualidade_de_vida,
  (profile).alta_lideranca,
  (profile).remuneracao_e_beneficios,
  (profile).oportunidades_de_carreira,
  (profile).recomendam_para_outras_pessoas,
  (profile).perspectiva_positiva_da_empresa,
  (profile).profile_segmento AS segmento,
  (profile).profile_nome AS nome
FROM joined
-- 6. Order, nulls last. Two profiles of one employer can join the same aggregate, so their
--    profile cnpj, which is not a report column, breaks that tie and makes the order total.
ORDER BY
  (aggregated).instituicao_financeira COLLATE "C" NULLS LAST,
  (aggregated).ano NULLS LAST,
  (aggregated).trimestre COLLATE "C" NULLS LAST,
  (aggregated).categoria COLLATE "C" NULLS LAST,
  (aggregated).tipo COLLATE "C" NULLS LAST,
  (profile).employer_name COLLATE "C" NULLS LAST,
  (aggregated).cnpj COLLATE "C" NULLS LAST,
  (profile).profile_cnpj COLLATE "C" NULLS LAST;
