import Foundation
import Testing
import WarrenAMQP

@testable import WarrenLedger

@Suite("Stored messages")
struct StoredMessageTests {
    @Test func everyHeaderKeepsItsAMQPType() throws {
        let headers: AMQPTable = [
            "bool": .bool(true), "int8": .int8(-7), "uint8": .uint8(200), "int16": .int16(-300),
            "uint16": .uint16(60_000),
            "int32": .int32(-70_000), "uint32": .uint32(4_000_000_000), "int64": .int64(.min), "uint64": .uint64(.max),
            "float": .float(1.5), "double": .double(-2.25), "nan": .double(.nan),
            "decimal": .decimal(scale: 2, value: 12345),
            "string": .string("<b>héllo</b>"), "bytes": .bytes([0, 255, 10]),
            "array": .array([.int8(1), .string("two"), .void]),
            "timestamp": .timestamp(1_795_000_000), "table": .table(["inner": .table(["deep": .int16(3)])]),
            "void": .void,
        ]
        let message = StoredMessage(
            body: [0, 1, 2, 0xff],
            properties: AMQPProperties(
                contentType: "application/octet-stream", contentEncoding: "identity", headers: headers,
                deliveryMode: .persistent,
                priority: 5, correlationID: "c", replyTo: "r", expiration: "60000", messageID: "m",
                timestamp: Date(timeIntervalSince1970: 1_795_000_000),
                type: "t", userID: "guest", appID: "a", clusterID: "k"))
        let read = try StoredMessage(encodedProperties: try message.encodedProperties(), base64Body: message.base64Body)
        #expect(read.body == message.body)
        var expected = message.properties
        var actual = read.properties
        // NaN is never equal to itself: compared apart.
        if case .double(let value)? = actual.headers?["nan"] { #expect(value.isNaN) } else { Issue.record("nan lost") }
        expected.headers?["nan"] = nil
        actual.headers?["nan"] = nil
        #expect(actual == expected)
    }

    @Test func textThatIsNotAStoredMessageIsAnError() {
        #expect(throws: (any Error).self) {
            try StoredMessage(encodedProperties: #"{"headers": {"x": {"type": "int9", "value": 1}}}"#, base64Body: "")
        }
        #expect(throws: (any Error).self) { try StoredMessage(encodedProperties: "{}", base64Body: "not base64!") }
    }
}
