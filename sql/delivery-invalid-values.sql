-- The input values that the delivery query turns into null because they do not parse: one row
-- per field and distinct value, with the number of deduplicated messages that carry it. Blank
-- values are not counted, because a blank value is a null by design. The export logs these rows
-- and stores their total. Fields and parsers are those of step 2 of sql/delivery.sql.
WITH
-- Step 1 of sql/delivery.sql, unchanged: one message per md5_body, the most recently stored,
-- then the greatest message_id.
deduplicated AS (
  SELECT DISTINCT ON (md5_body) body
  FROM events.reclamacoes_sqs_events
  ORDER BY md5_body, created_at DESC, message_id COLLATE "C" DESC
),

numeric_fields (field, parser) AS (
  VALUES
    ('ano', 'int4'),
    ('indice', 'br_decimal'),
    ('quantidade_de_reclamacoes_reguladas_procedentes', 'integer'),
    ('quantidade_de_reclamacoes_reguladas_outras', 'integer'),
    ('quantidade_de_reclamacoes_nao_reguladas', 'integer'),
    ('quantidade_total_de_clientes_ccs_e_scr', 'integer'),
    ('quantidade_de_clientes_ccs', 'integer'),
    ('quantidade_de_clientes_scr', 'integer'),
    ('quantidade_total_de_reclamacoes', 'integer')
),

field_values AS (
  SELECT
    numeric_fields.field,
    numeric_fields.parser,
    deduplicated.body ->> numeric_fields.field AS value
  FROM deduplicated
  CROSS JOIN numeric_fields
)

SELECT field, value, count(*) AS count
FROM field_values
WHERE trusted.clean_text(value) IS NOT NULL
  AND CASE parser
    WHEN 'int4' THEN trusted.parse_int4(value) IS NULL
    WHEN 'br_decimal' THEN trusted.parse_br_decimal(value) IS NULL
    ELSE trusted.parse_integer(value) IS NULL
  END
GROUP BY field, value
ORDER BY field COLLATE "C", count DESC, value COLLATE "C";
