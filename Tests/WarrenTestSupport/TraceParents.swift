import WarrenAMQP

/// `traceparent` values for the tracing suites: one valid, and what a hostile or broken publisher might send instead
/// (`TracingTests` checks each is dropped; `TracingBrokerTests` publishes them through a worker).
package enum TraceParents {
    package static let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    /// Values a hostile or broken publisher might put in `traceparent`: each is dropped.
    package static let hostile: [(String, AMQPFieldValue)] = [
        ("garbage", .string("not a trace context")),
        ("empty", .string("")),
        ("wrong version", .string("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
        ("version ff", .string("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
        ("too long", .string(valid + "-extra")),
        ("far too long", .string(String(repeating: "0", count: 100_000))),
        ("all-zero trace id", .string("00-00000000000000000000000000000000-00f067aa0ba902b7-01")),
        ("all-zero span id", .string("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")),
        ("not hex", .string("00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01")),
        ("wrong delimiters", .string("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01")),
        ("non-ASCII", .string("00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01")),
        ("a number", .int64(42)),
        ("a table", .table(["traceparent": .string(valid)])),
        ("bytes", .bytes(Array(valid.utf8) + [0xFF])),
        ("void", .void),
    ]
}
