-- Parsing and name normalization used by the delivery query and the reference loader. Every
-- statement is idempotent: migrate runs this file after migrate.sql before each command.
--
-- The results never depend on the server's locale: no upper(), no \s, no [[:alpha:]], because
-- those follow LC_CTYPE (a server initialized with --no-locale upper-cases ASCII only). Regular
-- expressions list their characters explicitly, and bracket ranges compare code points.
--
-- White space, wherever these functions trim or collapse it, means U+0020 space, U+0009 tab,
-- the line breaks U+000A, U+000B, U+000C, U+000D, U+0085, U+2028 and U+2029, and U+00A0
-- no-break space.
--
-- normalize() works only in a database whose encoding is UTF8.
--
-- Every function returns null for a null argument. The SQL-language ones are not declared
-- STRICT all the same, because the planner does not inline a STRICT function whose body has a
-- CASE or NULLIF, and a call that is not inlined costs several times as much.

CREATE SCHEMA IF NOT EXISTS trusted;

-- Trims white space at both ends and returns null for a blank value.
CREATE OR REPLACE FUNCTION trusted.clean_text(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT nullif(btrim(value, E' \t\n\v\f\r\u0085\u00A0\u2028\u2029'), '')
$$;

-- Trims white space as clean_text does, and returns the result when it matches the regular
-- expression, else null.
CREATE OR REPLACE FUNCTION trusted.clean_text_matching(value text, pattern text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN trusted.clean_text(value) ~ pattern THEN trusted.clean_text(value) END
$$;

-- Upper-cases ASCII letters and the lowercase letters of Latin-1 Supplement and Latin
-- Extended-A that have no canonical decomposition, as Unicode's default case mapping does
-- (ß becomes SS). Lowercase letters of other blocks stay as they are. Call it after accents
-- are removed, because letters such as ç or ã are ASCII only then.
CREATE OR REPLACE FUNCTION trusted.upper_latin(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT replace(
    replace(
      translate(
        value,
        'abcdefghijklmnopqrstuvwxyzæðøþđħıĳŀłŋœŧſ',
        'ABCDEFGHIJKLMNOPQRSTUVWXYZÆÐØÞĐĦIĲĿŁŊŒŦS'
      ),
      'ß',
      'SS'
    ),
    'ŉ',
    'ʼN'
  )
$$;

-- Normalizes a bank, employer or complaint institution name so that the three can be joined.
-- 1. Upper-cases, removes accents and collapses white space to single spaces.
-- 2. Removes a legal-form or grouping suffix at the end when a space or hyphen precedes it,
--    together with the spaces, hyphens and commas before it, and repeats that until no suffix
--    is left: `BANCO FIBRA S.A. - PRUDENCIAL` loses both suffixes.
-- 3. Trims spaces, hyphens and commas at both ends.
-- Returns null for a name that ends up empty. U+FFFD replacement characters are kept.
-- NOTE: only Latin script is fully normalized. Combining marks outside the blocks listed below
-- (Cyrillic, Hebrew, Devanagari) and the lowercase letters that upper_latin skips stay as
-- they are.
CREATE OR REPLACE FUNCTION trusted.normalize_name(name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  result text;
  previous text;
BEGIN
  -- Accents: decompose, then drop the combining marks of the Combining Diacritical Marks
  -- blocks (base, Extended, Supplement, for Symbols) and of Combining Half Marks.
  result := normalize(name, NFD);
  result := regexp_replace(
    result,
    '[\u0300-\u036F\u1AB0-\u1AFF\u1DC0-\u1DFF\u20D0-\u20FF\uFE20-\uFE2F]',
    '',
    'g'
  );
  result := trusted.upper_latin(result);
  result := regexp_replace(result, '[ \t\n\v\f\r\u0085\u00A0\u2028\u2029]+', ' ', 'g');
  result := btrim(result, ' ');

  -- Each pass removes one suffix and shortens the text, so the loop ends.
  LOOP
    previous := result;
    result := regexp_replace(
      result,
      '[-, ]*[- ](\(CONGLOMERADO\)|PRUDENCIAL|CFI|LTDA\.?|S\.A\.?|S/A\.?|SA)$',
      ''
    );
    EXIT WHEN result = previous;
  END LOOP;

  RETURN nullif(btrim(result, ' ,-'), '');
END;
$$;

-- Converts a plain decimal (optional sign, digits, optional `.` and digits) to double
-- precision. Returns null where the value lies outside the range of double precision, because
-- the cast would otherwise raise an error and stop the whole query. Also returns null for more
-- than 16,383 significant digits after the decimal mark, the input limit of numeric.
CREATE OR REPLACE FUNCTION trusted.decimal_to_double(value text) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  integer_digits text;
  fraction_digits text;
  exact numeric;
BEGIN
  -- A value of at most 300 characters is zero or lies between 1e-299 and 1e300 in magnitude,
  -- well inside the range of double precision.
  IF length(value) <= 300 THEN
    RETURN value::double precision;
  END IF;

  -- Stay within the input limits of numeric. More than 309 integer digits exceed the largest
  -- double, about 1.8e308, anyway.
  integer_digits := ltrim(split_part(ltrim(value, '-+'), '.', 1), '0');
  fraction_digits := rtrim(split_part(value, '.', 2), '0');

  IF length(integer_digits) > 309 OR length(fraction_digits) > 16383 THEN
    RETURN NULL;
  END IF;

  exact := (
    substring(value FROM '^[-+]?') || '0' || integer_digits || '.' || fraction_digits || '0'
  )::numeric;

  -- Beyond the largest finite double, or below the smallest positive one, the cast to double
  -- precision raises "out of range".
  IF exact <> 0
    AND (abs(exact) > 1.7976931348623157e308 OR abs(exact) < 4.9406564584124654e-324)
  THEN
    RETURN NULL;
  END IF;

  RETURN exact::double precision;
END;
$$;

-- Parses a Brazilian decimal such as `1.234,56` (1234.56): white space trimmed, an optional
-- sign, digits with `.` only between groups of three, then optionally `,` and decimals.
-- Returns null for a blank value and for anything else, such as `12.5` or `1,`.
CREATE OR REPLACE FUNCTION trusted.parse_br_decimal(value text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT trusted.decimal_to_double(
    replace(
      replace(
        trusted.clean_text_matching(value, '^[-+]?([0-9]{1,3}(\.[0-9]{3})+|[0-9]+)(,[0-9]+)?$'),
        '.',
        ''
      ),
      ',',
      '.'
    )
  )
$$;

-- Parses a decimal with `.` as the decimal mark and no grouping, as the employer files write
-- their ratings (`3.2`, `52.0`). Returns null for a blank or invalid value.
CREATE OR REPLACE FUNCTION trusted.parse_decimal(value text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT trusted.decimal_to_double(trusted.clean_text_matching(value, '^[-+]?[0-9]+(\.[0-9]+)?$'))
$$;

-- Parses an integer: white space trimmed, an optional sign, then digits only. Returns null for
-- a blank value, for anything else (`1.000`, `1e3`, `0x1F`, `1_000`) and outside the bigint
-- range.
CREATE OR REPLACE FUNCTION trusted.parse_integer(value text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  trimmed text := trusted.clean_text_matching(value, '^[-+]?[0-9]+$');
  digits text := ltrim(ltrim(trimmed, '-+'), '0');
  max_digits text := CASE
    WHEN trimmed LIKE '-%' THEN '9223372036854775808'
    ELSE '9223372036854775807'
  END;
BEGIN
  -- Compare the digits with the range limit as text, because the cast raises an error on
  -- overflow. Digit strings of equal length compare like their numbers.
  IF trimmed IS NULL
    OR length(digits) > 19
    OR (length(digits) = 19 AND digits COLLATE "C" > max_digits)
  THEN
    RETURN NULL;
  END IF;

  RETURN trimmed::bigint;
END;
$$;

-- Parses an integer as parse_integer does, and returns null outside the integer (int4) range.
CREATE OR REPLACE FUNCTION trusted.parse_int4(value text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
  parsed bigint := trusted.parse_integer(value);
BEGIN
  IF parsed IS NULL OR parsed NOT BETWEEN -2147483648 AND 2147483647 THEN
    RETURN NULL;
  END IF;

  RETURN parsed::integer;
END;
$$;

-- Parses a whole number written as a float, such as `2000.0`: pandas writes an integer column
-- that has blanks as floats. Returns null for a blank value, a fraction (`2000.5`), anything
-- else invalid, and outside the integer (int4) range.
CREATE OR REPLACE FUNCTION trusted.parse_float_as_integer(value text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT trusted.parse_int4(
    split_part(trusted.clean_text_matching(value, '^[-+]?[0-9]+(\.0+)?$'), '.', 1)
  )
$$;

-- Converts a numeric, such as the sum of bigint values, to bigint. Returns null outside the
-- bigint range, where the cast would raise an error and stop the whole query.
CREATE OR REPLACE FUNCTION trusted.numeric_to_bigint(value numeric) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE
    WHEN value BETWEEN -9223372036854775808 AND 9223372036854775807 THEN value::bigint
  END
$$;

-- Formats a CNPJ root as 8 characters, left-padded with zeros: the published files drop the
-- leading zeros (`5192316` is `05192316`). Returns null for a blank value, and also for a value
-- with anything but digits or with more than 8 digits, because such a value is no CNPJ root
-- and could only produce a wrong match.
CREATE OR REPLACE FUNCTION trusted.format_cnpj(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT lpad(trusted.clean_text_matching(value, '^[0-9]{1,8}$'), 8, '0')
$$;
