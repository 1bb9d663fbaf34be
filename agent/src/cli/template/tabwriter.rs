//! Go's `text/tabwriter` as Docker's tables use it (`minwidth 10, padding
//! 3`, spaces): cells end at `\t`, each column of a block of consecutive
//! lines is as wide as its widest cell plus the padding, the last cell of a
//! line is not part of any column.

/// Docker's table settings.
pub const MIN_WIDTH: usize = 10;
pub const PADDING: usize = 3;

/// `text` aligned into columns.
pub fn align(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut writer = Writer {
        lines: &lines,
        widths: Vec::new(),
        min_width,
        padding,
        out: String::new(),
    };
    writer.format(0, lines.len());
    writer.out
}

struct Writer<'a> {
    lines: &'a [Vec<&'a str>],
    widths: Vec<usize>,
    min_width: usize,
    padding: usize,
    out: String,
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

impl Writer<'_> {
    /// Lines `[start, end)` at the current column depth.
    fn format(&mut self, start: usize, end: usize) {
        let column = self.widths.len();
        let mut first = start;
        let mut this = start;
        while this < end {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            // A block of lines with a cell in this column starts here.
            self.write_lines(first, this);
            first = this;
            let mut column_width = self.min_width;
            while this < end && column + 1 < self.lines[this].len() {
                column_width = column_width.max(width(self.lines[this][column]) + self.padding);
                this += 1;
            }
            self.widths.push(column_width);
            self.format(first, this);
            self.widths.pop();
            first = this;
        }
        self.write_lines(first, end);
    }

    fn write_lines(&mut self, start: usize, end: usize) {
        for i in start..end {
            for (j, cell) in self.lines[i].iter().enumerate() {
                self.out.push_str(cell);
                if let Some(w) = self.widths.get(j) {
                    self.out
                        .push_str(&" ".repeat(w.saturating_sub(width(cell))));
                }
            }
            if i + 1 < self.lines.len() {
                self.out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_padding() {
        assert_eq!(
            align("ID\tNAME\tMODE\nabc\tweb\treplicated\n", MIN_WIDTH, PADDING),
            "ID        NAME      MODE\nabc       web       replicated\n"
        );
        // A cell longer than the minimum widens its column; the last cell
        // of each line is never padded.
        assert_eq!(
            align("a\tb\nlonger-than-ten\tc\n", MIN_WIDTH, PADDING),
            format!("a{}b\nlonger-than-ten   c\n", " ".repeat(17))
        );
        // A tab-terminated empty last column still pads the one before, as
        // Docker's `service ps` rows do.
        assert_eq!(
            align("x\t\ty\n", MIN_WIDTH, PADDING),
            format!("x{}y\n", " ".repeat(19))
        );
        assert_eq!(align("a\t\n", 1, 3), "a   \n");
        // Non-ASCII cells count characters.
        assert_eq!(align("é\tx\n", 1, 1), "é x\n");
    }

    #[test]
    fn blocks_end_at_lines_without_the_column() {
        assert_eq!(
            align("aaaa\tb\nno tabs here\ncc\td\n", 1, 1),
            "aaaa b\nno tabs here\ncc d\n"
        );
    }
}
