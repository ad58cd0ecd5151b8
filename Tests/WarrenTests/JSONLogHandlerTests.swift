import Foundation
import Logging
import Testing
import Warren

@Suite("JSON logs")
struct JSONLogHandlerTests {
    @Test func numbersAreNumbersAndTheOutputCanBeChosen() throws {
        var descriptors: [Int32] = [0, 0]
        #expect(pipe(&descriptors) == 0)
        defer {
            close(descriptors[0])
            close(descriptors[1])
        }
        var logger = Logger(label: "test") { JSONLogHandler(label: $0, output: .fileDescriptor(descriptors[1])) }
        logger[metadataKey: "queue"] = "emails"
        logger.info(
            "settled",
            metadata: [
                "attempt": .stringConvertible(2), "duration_ms": .stringConvertible(Int64(17)),
                "ratio": .stringConvertible(0.5),
                "duplicate": .stringConvertible(true), "message_id": "42",
            ])
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = read(descriptors[0], &buffer, buffer.count)
        let line = try #require(String(validating: buffer[..<max(0, count)], as: UTF8.self))
        #expect(line.hasSuffix("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["attempt"] as? Int == 2 && object["duration_ms"] as? Int == 17, "\(line)")
        #expect(object["ratio"] as? Double == 0.5 && object["duplicate"] as? Bool == true, "\(line)")
        #expect(object["message_id"] as? String == "42", "a string stays a string, digits or not")
        #expect(line.contains(#""attempt":2"#) && line.contains(#""message_id":"42""#))
        #expect(object["queue"] as? String == "emails" && object["message"] as? String == "settled")
    }
}
