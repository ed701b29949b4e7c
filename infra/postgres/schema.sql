-- A plain provisioning schema, as a contact center's own tools might keep T-Servers and
-- DNs: no Netwatch-specific columns, no foreign keys (a DN of an unknown T-Server can be
-- written; Netwatch refuses it). `netwatch cdc postgres` streams the committed changes of
-- these tables into `config` (docs/cdc.md).

CREATE TABLE IF NOT EXISTS tservers (
    id      integer PRIMARY KEY,
    name    text    NOT NULL,
    host    text    NOT NULL,
    port    integer NOT NULL,
    -- cti (a Genesys-style T-Server link) or kamailio (SIP server events over evapi)
    kind    text    NOT NULL DEFAULT 'cti',
    -- Kamailio: the JSON-RPC URL; NULL: http://host:(port + 1)/RPC
    rpc_url text
);

CREATE TABLE IF NOT EXISTS dns (
    dbid    integer PRIMARY KEY,
    tserver integer NOT NULL,
    number  text    NOT NULL,
    -- extension, acd-position, acd-queue, routing-point, trunk, ... (docs/config.md)
    type    text    NOT NULL DEFAULT 'extension'
);

-- Every committed change of the two tables in commit order, kept by triggers: what a test
-- compares `config` with. Not needed by Netwatch; harmless to keep.
CREATE TABLE IF NOT EXISTS change_log (
    seq       bigserial PRIMARY KEY,
    txid      bigint    NOT NULL DEFAULT txid_current(),
    tbl       text      NOT NULL,
    op        text      NOT NULL,
    row_key   integer   NOT NULL
);

-- The trigger's argument names the table's key column.
CREATE OR REPLACE FUNCTION netwatch_change_log() RETURNS trigger AS $$
DECLARE
    r jsonb := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
BEGIN
    INSERT INTO change_log (tbl, op, row_key) VALUES (TG_TABLE_NAME, TG_OP, (r ->> TG_ARGV[0])::integer);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS tservers_change_log ON tservers;
CREATE TRIGGER tservers_change_log AFTER INSERT OR UPDATE OR DELETE ON tservers
    FOR EACH ROW EXECUTE FUNCTION netwatch_change_log('id');
DROP TRIGGER IF EXISTS dns_change_log ON dns;
CREATE TRIGGER dns_change_log AFTER INSERT OR UPDATE OR DELETE ON dns
    FOR EACH ROW EXECUTE FUNCTION netwatch_change_log('dbid');
