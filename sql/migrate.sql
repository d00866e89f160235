-- Tables of sqs-pg-parquet. Every statement is idempotent: migrate runs before each command.

CREATE SCHEMA IF NOT EXISTS events;
CREATE SCHEMA IF NOT EXISTS trusted;

-- One row per SQS message stored. The primary key makes a redelivered message a no-op.
CREATE TABLE IF NOT EXISTS events.reclamacoes_sqs_events (
  message_id text PRIMARY KEY,
  -- Receipt handles of real SQS run far past 255 characters.
  receipt_handle text NOT NULL,
  md5_body text NOT NULL,
  body jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- The delivery query keeps the newest message per md5_body.
CREATE INDEX IF NOT EXISTS reclamacoes_sqs_events_md5_body_idx
  ON events.reclamacoes_sqs_events (md5_body, created_at DESC, message_id DESC);

-- Messages that could not become a row, stored in the same transaction as their batch.
CREATE TABLE IF NOT EXISTS events.dead_letters (
  message_id text PRIMARY KEY,
  -- The body exactly as SQS delivered it.
  body text NOT NULL,
  md5_body text NOT NULL,
  -- One of: invalid_base64, empty_body, avro_truncated, avro_trailing_bytes,
  -- schema_mismatch, unsupported_text, rejected_by_database.
  error_class text NOT NULL,
  error_message text NOT NULL,
  receive_count integer,
  sent_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS dead_letters_error_class_idx
  ON events.dead_letters (error_class, created_at);

-- One row per export attempt, so that failed runs stay visible.
CREATE TABLE IF NOT EXISTS events.export_runs (
  id bigserial PRIMARY KEY,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
  bucket text,
  object_key text,
  row_count bigint,
  size_bytes bigint,
  invalid_value_count bigint,
  error_message text
);

CREATE TABLE IF NOT EXISTS trusted.bancos (
  segmento text,
  cnpj text CHECK (char_length(cnpj) = 8),
  nome text
);

CREATE TABLE IF NOT EXISTS trusted.empregados (
  employer_name text,
  reviews_count bigint,
  culture_count bigint,
  salaries_count bigint,
  benefits_count bigint,
  employerwebsite text,
  employerheadquarters text,
  employerfounded integer,
  employerindustry text,
  employerrevenue text,
  url text,
  geral double precision,
  cultura_e_valores double precision,
  diversidade_e_inclusao double precision,
  qualidade_de_vida double precision,
  alta_lideranca double precision,
  remuneracao_e_beneficios double precision,
  oportunidades_de_carreira double precision,
  recomendam_para_outras_pessoas double precision,
  perspectiva_positiva_da_empresa double precision,
  segmento text,
  cnpj text CHECK (char_length(cnpj) = 8),
  nome text,
  match_percent double precision
);
