import Foundation

/// The SQL both stores share for the dead letters a ledger holds and for the operations on them (schema version 5);
/// each store says how it writes a placeholder and binds the values.
enum DeadLetterSQL {
    typealias Value = JobSQL.Value

    /// Schema version 5: a dead letter's whole message once a ledger took it off its queue (`held` = 1 until it is
    /// replayed or purged; `settled` says which, `settled_by` by which operation), and the operations.
    static func version5(integer: String) -> [String] {
        [
            "ALTER TABLE dead_letters ADD COLUMN message_properties TEXT",
            "ALTER TABLE dead_letters ADD COLUMN message_body TEXT",
            "ALTER TABLE dead_letters ADD COLUMN held INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE dead_letters ADD COLUMN settled TEXT",
            "ALTER TABLE dead_letters ADD COLUMN settled_by TEXT",
            "ALTER TABLE dead_letters ADD COLUMN settled_at_ms \(integer)",
            "CREATE INDEX dead_letters_held ON dead_letters (held, at_ms, message_id)",
            """
            CREATE TABLE dead_letter_operations (
                id TEXT PRIMARY KEY, action TEXT NOT NULL, filter TEXT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
                created_at_ms \(integer) NOT NULL, status TEXT NOT NULL, total \(integer) NOT NULL, settled \(integer) NOT NULL,
                cursor_at_ms \(integer), cursor_message_id TEXT, updated_at_ms \(integer) NOT NULL, error TEXT, owner TEXT,
                lease_until_ms \(integer))
            """,
            "CREATE INDEX dead_letter_operations_by_time ON dead_letter_operations (created_at_ms)",
        ]
    }

    /// The held dead letters of `filter`, oldest first, after `cursor`: `limit` of them with their messages.
    static func held(
        _ filter: DeadLetterFilter, after cursor: LedgerCursor?, limit: Int, placeholder: @escaping (Int) -> String
    ) -> (String, [Value]) {
        var conditions = self.conditions(filter, placeholder: placeholder)
        conditions.after(cursor, timeColumn: "at_ms", oldestFirst: true)
        return (
            """
            SELECT message_id, at_ms, queue, message_properties, message_body FROM dead_letters \(conditions.sql)
            ORDER BY at_ms, message_id LIMIT \(limit)
            """, conditions.values
        )
    }

    static func countHeld(_ filter: DeadLetterFilter, placeholder: @escaping (Int) -> String) -> (String, [Value]) {
        let conditions = self.conditions(filter, placeholder: placeholder)
        return ("SELECT COUNT(*) AS n FROM dead_letters \(conditions.sql)", conditions.values)
    }

    private static func conditions(_ filter: DeadLetterFilter, placeholder: @escaping (Int) -> String) -> JobSQL.Where {
        var conditions = JobSQL.Where(placeholder: placeholder)
        conditions.add(.integer(1)) { "held = \($0)" }
        conditions.add(filter.messageID.map(Value.text)) { "message_id = \($0)" }
        conditions.add(filter.groupID.map(Value.text)) { "group_id = \($0)" }
        conditions.add(filter.queue.map(Value.text)) { "queue = \($0)" }
        conditions.add(filter.sinceMs.map(Value.integer)) { "at_ms >= \($0)" }
        conditions.add(filter.untilMs.map(Value.integer)) { "at_ms < \($0)" }
        return conditions
    }

    /// The columns a taken dead letter adds to its record, after the event's (see the stores' `insertDeadLetters`).
    static let heldColumns = ", message_properties, message_body, held"

    /// Keeps a taken dead letter's message and marks it held, whether its worker's event came first or not, unless it
    /// was settled already (a copy the broker redelivered after the store committed it once and someone replayed it).
    /// The headers and body shown become the copy's own: what a replay publishes, whatever an event said of them; why
    /// it failed (and so its failure group) stays as first recorded.
    static let holdOnConflict = """
        ON CONFLICT (message_id, at_ms) DO UPDATE SET message_properties = excluded.message_properties,
            message_body = excluded.message_body, held = 1, headers = excluded.headers, body = excluded.body,
            body_encoding = excluded.body_encoding, body_truncated = excluded.body_truncated
        WHERE dead_letters.settled IS NULL
        """

    /// Whether the store holds a dead letter with this message id and body already (not replayed nor purged): how a
    /// copy that carries no time of its failure (``IngestedDeadLetter/keyedByReceipt``) is recognised when the broker
    /// redelivers it after its commit.
    static func heldAlready(placeholder: (Int) -> String) -> String {
        "SELECT 1 FROM dead_letters WHERE message_id = \(placeholder(1)) AND message_body = \(placeholder(2)) AND held = 1 LIMIT 1"
    }

    /// Settles `count` held dead letters at once (`RETURNING` says which were still held); a purge forgets the messages.
    static func settle(_ action: DeadLetterOperation.Action, count: Int, placeholder: (Int) -> String) -> String {
        let forget = action == .purge ? ", message_properties = NULL, message_body = NULL" : ""
        let keys = (0..<count).map { "(\(placeholder(4 + 2 * $0)), \(placeholder(5 + 2 * $0)))" }.joined(
            separator: ", ")
        return """
            UPDATE dead_letters SET held = 0, settled = \(placeholder(1)), settled_by = \(placeholder(2)),
                settled_at_ms = \(placeholder(3))\(forget)
            WHERE held = 1 AND (message_id, at_ms) IN (VALUES \(keys)) RETURNING message_id, at_ms
            """
    }

    static func settleValues(_ letters: [HeldDeadLetter], operation: DeadLetterOperation, nowMs: Int64) -> [Value] {
        [.text(operation.action == .replay ? "replayed" : "purged"), .text(operation.id), .integer(nowMs)]
            + letters.flatMap { [Value.text($0.messageID), .integer($0.atMs)] }
    }

    static let operationColumns = """
        id, action, filter, actor, role, created_at_ms, status, total, settled, cursor_at_ms, cursor_message_id, updated_at_ms, error
        """

    static func insertOperation(placeholder: (Int) -> String) -> String {
        "INSERT INTO dead_letter_operations (\(operationColumns)) VALUES (\((1...13).map(placeholder).joined(separator: ", ")))"
    }

    static func operationValues(_ operation: DeadLetterOperation) throws -> [Value] {
        [
            .text(operation.id), .text(operation.action.rawValue), .text(try operation.filter.json()),
            .text(operation.actor),
            .text(operation.role), .integer(operation.createdAtMs), .text(operation.status.rawValue),
            .integer(Int64(operation.total)),
            .integer(Int64(operation.settled)), operation.cursor.map { .integer($0.atMs) } ?? .null,
            operation.cursor.map { .text($0.messageID) } ?? .null, .integer(operation.updatedAtMs),
            operation.error.map(Value.text) ?? .null,
        ]
    }

    /// The progress of an operation after a batch, in the batch's transaction.
    static func advance(placeholder: (Int) -> String) -> String {
        """
        UPDATE dead_letter_operations SET settled = settled + \(placeholder(1)), cursor_at_ms = \(placeholder(2)),
            cursor_message_id = \(placeholder(3)), updated_at_ms = \(placeholder(4))
        WHERE id = \(placeholder(5))
        """
    }

    static func finish(placeholder: (Int) -> String) -> String {
        """
        UPDATE dead_letter_operations SET status = \(placeholder(1)), error = \(placeholder(2)), updated_at_ms = \(placeholder(3)),
            owner = NULL, lease_until_ms = NULL
        WHERE id = \(placeholder(4))
        """
    }

    /// Takes (or renews) an operation's lease for `owner`: only a running one, and only when nobody else holds a
    /// lease that has not run out. `RETURNING` says whether it was taken.
    static func claim(placeholder: (Int) -> String) -> String {
        """
        UPDATE dead_letter_operations SET owner = \(placeholder(1)), lease_until_ms = \(placeholder(2))
        WHERE id = \(placeholder(3)) AND status = 'running'
            AND (owner IS NULL OR owner = \(placeholder(1)) OR lease_until_ms < \(placeholder(4)))
        RETURNING id
        """
    }

    static let unfinished =
        "SELECT id FROM dead_letter_operations WHERE status = 'running' ORDER BY created_at_ms LIMIT 100"

    static func operations(byID: Bool, placeholder: (Int) -> String) -> String {
        byID
            ? "SELECT \(operationColumns) FROM dead_letter_operations WHERE id = \(placeholder(1))"
            : "SELECT \(operationColumns) FROM dead_letter_operations ORDER BY created_at_ms DESC, id DESC LIMIT \(placeholder(1))"
    }

    /// An operation from its row's columns.
    static func operation(
        id: String, action: String, filter: String, actor: String, role: String, createdAtMs: Int64, status: String,
        total: Int64,
        settled: Int64, cursorAtMs: Int64?, cursorMessageID: String?, updatedAtMs: Int64, error: String?
    ) -> DeadLetterOperation {
        DeadLetterOperation(
            id: id, action: DeadLetterOperation.Action(rawValue: action) ?? .replay,
            filter: (try? DeadLetterFilter.decode(json: filter)) ?? DeadLetterFilter(), actor: actor, role: role,
            createdAtMs: createdAtMs, total: Int(total),
            status: DeadLetterOperation.Status(rawValue: status) ?? .failed,
            settled: Int(settled),
            cursor: cursorAtMs.flatMap { at in cursorMessageID.map { LedgerCursor(atMs: at, messageID: $0) } },
            updatedAtMs: updatedAtMs, error: error)
    }
}

extension DeadLetterFilter {
    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    static func decode(json: String) throws -> DeadLetterFilter {
        try JSONDecoder().decode(DeadLetterFilter.self, from: Data(json.utf8))
    }
}

extension StoredMessage {
    var base64Body: String { Data(body).base64EncodedString() }
}
