//! Writes store files: label columns straight from their Arrow dictionaries, the rest through
//! arrow-rs's column writers, into one Parquet file with the store's writer properties.

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, DictionaryArray, RecordBatch};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::parquet::arrow::ArrowSchemaConverter;
use datafusion::parquet::arrow::add_encoded_arrow_schema_to_metadata;
use datafusion::parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use datafusion::parquet::basic::{Compression, Encoding};
use datafusion::parquet::column::page::{CompressedPage, Page, PageWriter};
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::data_type::ByteArray;
use datafusion::parquet::errors::{ParquetError, Result};
use datafusion::parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::file::statistics::Statistics;
use datafusion::parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use datafusion::parquet::schema::types::ColumnDescPtr;

/// Writes `batch` as one Parquet file into `out`, in row groups of the properties' size.
///
/// arrow-rs's writer rebuilds a Parquet dictionary by hashing every row's string, although a
/// `Dictionary(Int32, Utf8)` column already is one: those columns are encoded here from their
/// keys (dictionary page of the values in use, RLE/bit-packed indices), so the cost per row is
/// a key lookup. Other columns go through arrow-rs's own column writers.
pub fn write_batch(
    out: impl Write + Send,
    batch: &RecordBatch,
    properties: WriterProperties,
) -> Result<()> {
    if properties.max_row_group_bytes().is_some() {
        return Err(ParquetError::NYI(
            "row groups limited by bytes; the store limits them by rows".into(),
        ));
    }
    let schema = batch.schema();
    let mut properties = properties;
    add_encoded_arrow_schema_to_metadata(&schema, &mut properties);
    let parquet_schema = ArrowSchemaConverter::new()
        .with_coerce_types(properties.coerce_types())
        .convert(&schema)?;
    let properties = Arc::new(properties);
    let mut writer = SerializedFileWriter::new(
        out,
        parquet_schema.root_schema_ptr(),
        Arc::clone(&properties),
    )?;
    let factory = ArrowRowGroupWriterFactory::new(&writer, Arc::clone(&schema));
    let group_rows = properties
        .max_row_group_row_count()
        .unwrap_or(usize::MAX)
        .max(1);
    for (row_group, offset) in (0..batch.num_rows()).step_by(group_rows).enumerate() {
        let slice = batch.slice(offset, group_rows.min(batch.num_rows() - offset));
        let mut group = writer.next_row_group()?;
        let mut column_writers = factory.create_column_writers(row_group)?.into_iter();
        for (index, (field, column)) in schema.fields().iter().zip(slice.columns()).enumerate() {
            let mut column_writer = column_writers
                .next()
                .ok_or_else(|| ParquetError::General("fewer column writers than columns".into()))?;
            let descr = parquet_schema.column(index);
            match dictionary_of_strings(column).filter(|_| encodes_as_is(&descr, &properties)) {
                Some(dictionary) => {
                    let (bytes, close) = encode_dictionary_chunk(dictionary, descr, &properties)?;
                    group.append_column(&bytes, close)?;
                }
                None => {
                    for leaf in compute_leaves(field, column)? {
                        column_writer.write(&leaf)?;
                    }
                    column_writer.close()?.append_to_row_group(&mut group)?;
                }
            }
        }
        group.close()?;
    }
    writer.close()?;
    Ok(())
}

/// Whether the properties ask for nothing of `descr` beyond what [`encode_dictionary_chunk`]
/// writes: a dictionary, and no bloom filter.
fn encodes_as_is(descr: &ColumnDescPtr, properties: &WriterProperties) -> bool {
    properties.dictionary_enabled(descr.path())
        && properties.bloom_filter_properties(descr.path()).is_none()
}

fn dictionary_of_strings(column: &ArrayRef) -> Option<&DictionaryArray<Int32Type>> {
    match column.data_type() {
        DataType::Dictionary(key, value)
            if key.as_ref() == &DataType::Int32 && value.as_ref() == &DataType::Utf8 =>
        {
            Some(column.as_dictionary::<Int32Type>())
        }
        _ => None,
    }
}

/// One column chunk of a flat, optional byte-array column: a PLAIN dictionary page of the values
/// the rows use (in order of first use), then data pages of RLE definition levels and
/// RLE/bit-packed dictionary indices, each compressed, with an offset index and, where the
/// properties ask for statistics, min/max taken over the dictionary's values in use.
fn encode_dictionary_chunk(
    array: &DictionaryArray<Int32Type>,
    descr: ColumnDescPtr,
    properties: &WriterProperties,
) -> Result<(bytes::Bytes, ColumnCloseResult)> {
    if descr.max_rep_level() != 0 || descr.max_def_level() > 1 {
        return Err(ParquetError::General(format!(
            "column {} is nested; only flat columns are encoded from dictionaries",
            descr.path()
        )));
    }
    let path = descr.path().clone();
    let compression = properties.compression(&path);
    let mut codec = Codec::new(compression)?;
    let values = array.values().as_string::<i32>();
    let keys = array.keys();

    // The dictionary index of every non-null row, numbering the values in order of first use.
    let nulls = array.logical_nulls().filter(|n| n.null_count() > 0);
    if descr.max_def_level() == 0 && nulls.is_some() {
        return Err(ParquetError::General(format!(
            "column {} is required but holds nulls",
            descr.path()
        )));
    }
    let mut remap = vec![u32::MAX; values.len()];
    let mut used: Vec<usize> = Vec::new();
    let mut index_of = |key: i32| {
        let slot = &mut remap[key as usize];
        if *slot == u32::MAX {
            *slot = used.len() as u32;
            used.push(key as usize);
        }
        *slot
    };
    // Label columns hold long runs of one key, so the rows are read as runs and encoded as such.
    let mut runs: Vec<(u32, usize)> = Vec::new();
    let mut add_runs = |keys: &[i32]| {
        let mut start = 0;
        while start < keys.len() {
            let key = keys[start];
            let length = run_length(&keys[start..], key);
            let index = index_of(key);
            match runs.last_mut() {
                Some((last, count)) if *last == index => *count += length,
                _ => runs.push((index, length)),
            }
            start += length;
        }
    };
    match &nulls {
        None => add_runs(keys.values()),
        Some(nulls) => {
            for (start, end) in nulls.valid_slices() {
                add_runs(&keys.values()[start..end]);
            }
        }
    }
    let mut indices = RunCursor::new(&runs);

    let mut sink = TrackedWrite::new(Vec::new());
    let mut pages = SerializedPageWriter::new(&mut sink);
    let mut offsets = OffsetIndexBuilder::new();
    let (mut compressed_size, mut uncompressed_size) = (0i64, 0i64);

    let mut dictionary = Vec::new();
    for key in &used {
        let value = values.value(*key).as_bytes();
        dictionary.extend_from_slice(&(value.len() as u32).to_le_bytes());
        dictionary.extend_from_slice(value);
    }
    let page = Page::DictionaryPage {
        buf: codec.compress(&dictionary)?,
        num_values: used.len() as u32,
        encoding: Encoding::PLAIN,
        is_sorted: false,
    };
    let spec = pages.write_page(CompressedPage::new(page, dictionary.len()))?;
    compressed_size += spec.compressed_size as i64;
    uncompressed_size += spec.uncompressed_size as i64;
    let data_page_offset = spec.bytes_written as i64;

    let bit_width = bits_for(used.len().saturating_sub(1) as u32);
    let page_rows = properties.data_page_row_count_limit().max(1);
    let mut buffer = Vec::new();
    let mut page_runs = Vec::new();
    for first_row in (0..array.len()).step_by(page_rows) {
        let rows = page_rows.min(array.len() - first_row);
        buffer.clear();
        let page_nulls = nulls.as_ref().map(|n| n.slice(first_row, rows));
        if descr.max_def_level() == 1 {
            let mut encoded = Vec::new();
            match &page_nulls {
                Some(page_nulls) => encode_hybrid(&level_runs(page_nulls), 1, &mut encoded),
                None => write_run(1, rows, 1, &mut encoded),
            }
            buffer.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&encoded);
        }
        let present = rows - page_nulls.map_or(0, |n| n.null_count());
        buffer.push(bit_width);
        indices.take(present, &mut page_runs);
        encode_hybrid(&page_runs, bit_width, &mut buffer);
        let page = Page::DataPage {
            buf: codec.compress(&buffer)?,
            num_values: rows as u32,
            encoding: Encoding::RLE_DICTIONARY,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = pages.write_page(CompressedPage::new(page, buffer.len()))?;
        compressed_size += spec.compressed_size as i64;
        uncompressed_size += spec.uncompressed_size as i64;
        offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        offsets.append_row_count(rows as i64);
    }
    pages.close()?;

    let mut metadata = ColumnChunkMetaData::builder(descr)
        .set_compression(compression)
        .set_encodings(vec![
            Encoding::PLAIN,
            Encoding::RLE,
            Encoding::RLE_DICTIONARY,
        ])
        .set_num_values(array.len() as i64)
        .set_total_compressed_size(compressed_size)
        .set_total_uncompressed_size(uncompressed_size)
        .set_dictionary_page_offset(Some(0))
        .set_data_page_offset(data_page_offset);
    if properties.statistics_enabled(&path) != EnabledStatistics::None {
        let in_use = || used.iter().map(|key| values.value(*key));
        let to_bytes = |text: &str| ByteArray::from(text.as_bytes().to_vec());
        metadata = metadata.set_statistics(Statistics::byte_array(
            in_use().min().map(to_bytes),
            in_use().max().map(to_bytes),
            None,
            Some(nulls.as_ref().map_or(0, |n| n.null_count()) as u64),
            false,
        ));
    }
    let close = ColumnCloseResult {
        bytes_written: compressed_size as u64,
        rows_written: array.len() as u64,
        metadata: metadata.build()?,
        bloom_filter: None,
        column_index: None,
        offset_index: (!properties.offset_index_disabled()).then(|| offsets.build()),
    };
    Ok((bytes::Bytes::from(sink.into_inner()?), close))
}

/// The page compression of one column chunk: one ZSTD context for all its pages.
enum Codec {
    Uncompressed,
    Zstd(zstd::bulk::Compressor<'static>),
}

impl Codec {
    fn new(compression: Compression) -> Result<Codec> {
        let external = |e: std::io::Error| ParquetError::External(Box::new(e));
        match compression {
            Compression::UNCOMPRESSED => Ok(Codec::Uncompressed),
            Compression::ZSTD(level) => Ok(Codec::Zstd(
                zstd::bulk::Compressor::new(level.compression_level()).map_err(external)?,
            )),
            other => Err(ParquetError::NYI(format!(
                "dictionary columns compressed with {other}"
            ))),
        }
    }

    fn compress(&mut self, data: &[u8]) -> Result<bytes::Bytes> {
        match self {
            Codec::Uncompressed => Ok(bytes::Bytes::copy_from_slice(data)),
            Codec::Zstd(compressor) => compressor
                .compress(data)
                .map(bytes::Bytes::from)
                .map_err(|e| ParquetError::External(Box::new(e))),
        }
    }
}

/// Bits needed to write `max`: 0 for 0.
fn bits_for(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// How many values from the start of `values` equal `value`.
fn run_length(values: &[i32], value: i32) -> usize {
    values
        .iter()
        .position(|v| *v != value)
        .unwrap_or(values.len())
}

/// The definition levels of `nulls`' rows (1 valid, 0 null) as runs.
fn level_runs(nulls: &NullBuffer) -> Vec<(u32, usize)> {
    let mut runs = Vec::new();
    let mut next = 0;
    for (start, end) in nulls.valid_slices() {
        if start > next {
            runs.push((0, start - next));
        }
        runs.push((1, end - start));
        next = end;
    }
    if nulls.len() > next {
        runs.push((0, nulls.len() - next));
    }
    runs
}

/// Reads runs of values in pieces of a given number of values.
struct RunCursor<'a> {
    runs: &'a [(u32, usize)],
    /// Values of `runs[0]` already taken.
    taken: usize,
}

impl<'a> RunCursor<'a> {
    fn new(runs: &'a [(u32, usize)]) -> RunCursor<'a> {
        RunCursor { runs, taken: 0 }
    }

    /// Replaces `out` with the runs of the next `count` values.
    fn take(&mut self, mut count: usize, out: &mut Vec<(u32, usize)>) {
        out.clear();
        while count > 0 {
            let Some(&(value, length)) = self.runs.first() else {
                break;
            };
            let piece = (length - self.taken).min(count);
            out.push((value, piece));
            count -= piece;
            self.taken += piece;
            if self.taken == length {
                self.runs = &self.runs[1..];
                self.taken = 0;
            }
        }
    }
}

/// Appends the values of `runs` (value, count) in Parquet's RLE/bit-packing hybrid encoding
/// with `bit_width` bits a value: runs of 8 or more equal values as RLE runs, the rest
/// bit-packed in groups of 8 (the last group padded with zeros, which a reader skips by the
/// page's value count).
fn encode_hybrid(runs: &[(u32, usize)], bit_width: u8, out: &mut Vec<u8>) {
    let mut literals: Vec<u32> = Vec::new();
    for &(value, count) in runs {
        // A run first fills the pending literals up to a whole group, if it stays a run then.
        let fill = (8 - literals.len() % 8) % 8;
        if count >= fill + 8 {
            literals.extend(std::iter::repeat_n(value, fill));
            flush_literals(&mut literals, bit_width, out);
            write_run(value, count - fill, bit_width, out);
        } else {
            literals.extend(std::iter::repeat_n(value, count));
        }
    }
    flush_literals(&mut literals, bit_width, out);
}

/// One RLE run: `count` times `value`.
fn write_run(value: u32, count: usize, bit_width: u8, out: &mut Vec<u8>) {
    write_varint((count as u64) << 1, out);
    let width = usize::from(bit_width).div_ceil(8);
    out.extend_from_slice(&value.to_le_bytes()[..width]);
}

/// Writes `literals` as bit-packed runs of at most 63 groups of 8 values, padding the last group.
fn flush_literals(literals: &mut Vec<u32>, bit_width: u8, out: &mut Vec<u8>) {
    if literals.is_empty() {
        return;
    }
    literals.resize(literals.len().div_ceil(8) * 8, 0);
    for run in literals.chunks(63 * 8) {
        write_varint(((run.len() / 8) as u64) << 1 | 1, out);
        let mut bits: u64 = 0;
        let mut filled = 0u32;
        for value in run {
            bits |= u64::from(*value) << filled;
            filled += u32::from(bit_width);
            while filled >= 8 {
                out.push(bits as u8);
                bits >>= 8;
                filled -= 8;
            }
        }
        debug_assert_eq!(filled, 0, "8 values fill whole bytes");
    }
    literals.clear();
}

fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_runs_and_literals() {
        // Ten 3s: one RLE run of 10, value in one byte.
        let mut out = Vec::new();
        encode_hybrid(&[(3, 10)], 2, &mut out);
        assert_eq!(out, [10 << 1, 3]);
        // 1, 2 then eight 0s: the run gives 6 values to fill the literal group, leaving only 2,
        // so everything is one group of bit-packed literals (then a padded second group).
        let mut out = Vec::new();
        encode_hybrid(&[(1, 1), (2, 1), (0, 8)], 2, &mut out);
        assert_eq!(out, [(2 << 1) | 1, 0b0000_1001, 0, 0, 0]);
        // 1, 2 then twenty 0s: 6 zeros fill the group, 14 stay a run.
        let mut out = Vec::new();
        encode_hybrid(&[(1, 1), (2, 1), (0, 20)], 2, &mut out);
        assert_eq!(out, [(1 << 1) | 1, 0b0000_1001, 0, 14 << 1, 0]);
    }

    #[test]
    fn runs_are_taken_in_pieces_across_their_ends() {
        let runs = [(4, 5), (7, 1), (2, 10)];
        let mut cursor = RunCursor::new(&runs);
        let mut piece = Vec::new();
        cursor.take(3, &mut piece);
        assert_eq!(piece, [(4, 3)]);
        cursor.take(6, &mut piece);
        assert_eq!(piece, [(4, 2), (7, 1), (2, 3)]);
        cursor.take(100, &mut piece);
        assert_eq!(piece, [(2, 7)]);
        cursor.take(1, &mut piece);
        assert!(piece.is_empty());
    }

    #[test]
    fn levels_of_nulls_as_runs() {
        let nulls = NullBuffer::from(vec![false, false, true, true, true, false, true, false]);
        assert_eq!(level_runs(&nulls), [(0, 2), (1, 3), (0, 1), (1, 1), (0, 1)]);
        assert_eq!(level_runs(&NullBuffer::from(vec![true; 4])), [(1, 4)]);
    }

    /// A column of runs, alternations, nulls (null keys and keys of null values) and unused
    /// dictionary values, over several row groups and pages, reads back as written, with
    /// min/max over the values in use and a page index.
    #[test]
    fn dictionary_columns_read_back() {
        use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};
        use datafusion::arrow::compute::{cast, concat_batches};
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::parquet::arrow::arrow_reader::{
            ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
        };
        use datafusion::parquet::basic::ZstdLevel;
        use datafusion::parquet::file::metadata::PageIndexPolicy;

        let rows = 50_000;
        let keys: Int32Array = (0..rows)
            .map(|i| match i % 1000 {
                0..=399 => Some(2 + (i / 1000) % 3),
                400..=409 => None,
                410..=699 => Some(6 + i % 2),
                700..=705 => Some(5),
                _ => Some(3 + (i / 7) % 2),
            })
            .collect();
        let values = StringArray::from(vec![
            Some("unused"),
            Some("zz-never"),
            Some("checkout-7d9f8b6c5d-x2x4z"),
            Some("b"),
            Some("a"),
            None,
            Some("eth0"),
            Some("eth1"),
        ]);
        let labels = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("label", labels.data_type().clone(), true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(labels.clone()),
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            ],
        )
        .unwrap();
        // The last: no dictionary asked for, so arrow-rs's writer takes the column.
        for (compression, dictionary) in [
            (Compression::UNCOMPRESSED, true),
            (Compression::ZSTD(ZstdLevel::try_new(1).unwrap()), true),
            (Compression::ZSTD(ZstdLevel::try_new(1).unwrap()), false),
        ] {
            let properties = WriterProperties::builder()
                .set_compression(compression)
                .set_dictionary_enabled(dictionary)
                .set_max_row_group_row_count(Some(7_000))
                .set_data_page_row_count_limit(1_000)
                .build();
            let mut file = Vec::new();
            write_batch(&mut file, &batch, properties).unwrap();
            let file = bytes::Bytes::from(file);
            let options =
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
            let reader =
                ParquetRecordBatchReaderBuilder::try_new_with_options(file.clone(), options)
                    .unwrap();
            let metadata = reader.metadata().clone();
            assert_eq!(metadata.num_row_groups(), 8);
            let encodings = metadata
                .row_group(0)
                .column(0)
                .encodings()
                .collect::<Vec<_>>();
            assert_eq!(
                encodings.contains(&Encoding::RLE_DICTIONARY),
                dictionary,
                "{encodings:?}"
            );
            assert!(metadata.offset_index().is_some());
            let read: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
            let read = concat_batches(&read[0].schema(), &read).unwrap();
            assert_eq!(read.column(0).data_type(), labels.data_type());
            assert_eq!(read.column(1).as_ref(), batch.column(1).as_ref());
            let as_text = |array: &ArrayRef| cast(array, &DataType::Utf8).unwrap();
            assert_eq!(
                as_text(read.column(0)).as_ref(),
                as_text(batch.column(0)).as_ref()
            );
            let first = metadata.row_group(0).column(0).statistics().unwrap();
            assert_eq!(first.min_bytes_opt(), Some("a".as_bytes()));
            assert_eq!(
                first.max_bytes_opt(),
                Some("eth1".as_bytes()),
                "over the values in use, not the whole dictionary"
            );
            assert_eq!(first.null_count_opt(), Some(7 * 10 + 7 * 6));
        }
    }

    #[test]
    fn bit_widths() {
        assert_eq!(bits_for(0), 0);
        assert_eq!(bits_for(1), 1);
        assert_eq!(bits_for(2), 2);
        assert_eq!(bits_for(255), 8);
        assert_eq!(bits_for(256), 9);
    }
}
