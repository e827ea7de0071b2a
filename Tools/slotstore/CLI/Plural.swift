/// Counts with their noun in the right number: "1 field", "2 fields".
enum Plural {
    /// `count` and `noun`, made plural (by `plural`, or `noun` + "s") unless `count` is 1.
    static func count(_ count: Int, _ noun: String, plural: String? = nil) -> String {
        "\(count) \(count == 1 ? noun : plural ?? noun + "s")"
    }
}
