import Foundation
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLedger

/// A dead letter as a Warren worker writes it: its failure time, attempts, reason and queue in its headers.
func deadLetterMessage(
    _ id: String, queue: String, failedAtMs: Int64, body: String = #"{"userId":"u","email":"u@example.com"}"#,
    error: String = "Reject: 550 no such mailbox",
    extra: AMQPTable = [:]
) -> StoredMessage {
    var headers: AMQPTable = [
        WarrenHeader.reason: .string("rejected"), WarrenHeader.errorMessage: .string(error),
        WarrenHeader.attempts: .int64(1),
        WarrenHeader.originalQueue: .string(queue), WarrenHeader.lastFailureAt: .int64(failedAtMs),
        WarrenHeader.firstFailureAt: .int64(failedAtMs),
        WarrenHeader.host: .string("worker-1"),
    ]
    headers.merge(extra) { $1 }
    return StoredMessage(
        body: Array(body.utf8),
        properties: AMQPProperties(
            contentType: "application/json", headers: headers, deliveryMode: .persistent, messageID: id,
            timestamp: Date(timeIntervalSince1970: 1_795_000_000), type: "email.welcome"))
}
