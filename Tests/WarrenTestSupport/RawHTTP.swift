import Foundation

/// An HTTP/1.1 client over a blocking socket on a thread of its own, never on the cooperative pool: it sends exactly the
/// bytes it is given (a request target no URL type would build: invalid percent-escapes, NUL, 100 KB), and reads
/// headers written without a space after the colon (`Content-Length:250`, as chromedriver writes them, which
/// Foundation's URLSession on Linux cannot read).
package enum RawHTTP {
    package struct Answer: Sendable {
        /// 0 when the connection failed or closed without an answer.
        package var status: Int
        /// Header names in lowercase (the last of a repeated one).
        package var headers: [String: String]
        package var body: String
        /// Every `Set-Cookie`, in order.
        package var cookies: [String] = []
    }

    /// Sends `method target` with `headers` (and `Content-Length` when there is a body) to 127.0.0.1:`port`, and reads
    /// the answer: as long as its `Content-Length` says, or until the server closes the connection (`Connection:
    /// close`), or `timeout` passes without a byte.
    package static func request(
        port: Int, _ method: String, _ target: [UInt8], headers: [(String, String)] = [], body: [UInt8] = [],
        timeout: Duration = .seconds(10)
    ) async -> Answer {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    returning: send(port: port, method, target, headers: headers, body: body, timeout: timeout))
            }
        }
    }

    package static func request(
        port: Int, _ method: String, _ target: String, headers: [(String, String)] = [], body: String = "",
        timeout: Duration = .seconds(10)
    ) async -> Answer {
        await request(
            port: port, method, Array(target.utf8), headers: headers, body: Array(body.utf8), timeout: timeout)
    }

    private static func send(
        port: Int, _ method: String, _ target: [UInt8], headers: [(String, String)], body: [UInt8], timeout: Duration
    ) -> Answer {
        let failed = Answer(status: 0, headers: [:], body: "")
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return failed }
        defer { close(fd) }
        var seconds = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &seconds, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return failed }
        var request =
            Array("\(method) ".utf8) + target + Array(" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".utf8)
        for (name, value) in headers { request += Array("\(name): \(value)\r\n".utf8) }
        if !body.isEmpty || method == "POST" { request += Array("Content-Length: \(body.count)\r\n".utf8) }
        request += Array("\r\n".utf8) + body
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { break }  // the server may answer (and close) before reading everything
            sent += n
        }
        // Until the server closes the connection, or, when the answer says its length, until that much has come (a
        // server may keep the connection open whatever the request said: chromedriver does).
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var expected: Int?
        while expected.map({ received.count < $0 }) ?? true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { break }
            received += buffer[..<n]
            if expected == nil, let split = received.firstRange(of: Array("\r\n\r\n".utf8)) {
                let head = String(decoding: received[..<split.lowerBound], as: UTF8.self).lowercased()
                let length = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") })
                    .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) }
                expected = length.map { split.upperBound + $0 } ?? .max
            }
        }
        guard let end = received.firstRange(of: Array("\r\n\r\n".utf8)) else { return failed }
        let head = String(decoding: received[..<end.lowerBound], as: UTF8.self).split(
            separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = head.first?.split(separator: " ") ?? []
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return failed }
        var fields: [String: String] = [:]
        var cookies: [String] = []
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let (name, value) = (
                line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            )
            fields[name] = value
            if name == "set-cookie" { cookies.append(value) }
        }
        var content = Array(received[end.upperBound...])
        if fields["transfer-encoding"]?.lowercased() == "chunked" { content = dechunk(content) }
        return Answer(status: status, headers: fields, body: String(decoding: content, as: UTF8.self), cookies: cookies)
    }

    private static func dechunk(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while let lineEnd = bytes[index...].firstRange(of: Array("\r\n".utf8)) {
            guard let size = Int(String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self), radix: 16),
                size > 0
            else { break }
            let start = lineEnd.upperBound
            guard start + size <= bytes.count else { break }
            out += bytes[start..<start + size]
            index = start + size + 2
            guard index < bytes.count else { break }
        }
        return out
    }
}
