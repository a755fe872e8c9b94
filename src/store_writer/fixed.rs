//! 64-bit columns without nulls (`time`, `value`) written straight from their Arrow buffers:
//! PLAIN or BYTE_STREAM_SPLIT pages, with the statistics and page index that time pruning reads.

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{ArrowNativeType, DataType, ToByteSlice};
use datafusion::parquet::basic::{BoundaryOrder, Encoding, Type};
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::errors::Result;
use datafusion::parquet::file::metadata::ColumnIndexBuilder;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use datafusion::parquet::file::statistics::{Statistics, ValueStatistics};
use datafusion::parquet::schema::types::ColumnDescPtr;

use super::hybrid::definition_levels;
use super::pages::ChunkPages;

/// A value of the columns written here: 8 bytes, ordered as Parquet orders its physical type.
trait Value: ArrowNativeType + PartialOrd {
    /// Chunk statistics of this physical type.
    fn statistics(statistics: ValueStatistics<Self>) -> Statistics;

    /// The least and greatest of `values` (not empty) as Parquet's statistics give them, or
    /// `None` where Parquet's order is not `<` (NaN), which arrow-rs's writer then handles.
    fn min_max(values: &[Self]) -> Option<(Self, Self)>;
}

impl Value for i64 {
    fn statistics(statistics: ValueStatistics<i64>) -> Statistics {
        Statistics::Int64(statistics)
    }

    fn min_max(values: &[i64]) -> Option<(i64, i64)> {
        let min = *values.iter().min()?;
        let max = *values.iter().max()?;
        Some((min, max))
    }
}

impl Value for f64 {
    fn statistics(statistics: ValueStatistics<f64>) -> Statistics {
        Statistics::Double(statistics)
    }

    fn min_max(values: &[f64]) -> Option<(f64, f64)> {
        if values.is_empty() || values.iter().any(|v| v.is_nan()) {
            return None;
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Parquet writes a zero minimum as -0.0 and a zero maximum as +0.0, whichever zeros
        // the page holds.
        let min = if min == 0.0 { -0.0 } else { min };
        let max = if max == 0.0 { 0.0 } else { max };
        Some((min, max))
    }
}

/// Encodes `column` as one column chunk of `descr`, or returns `None` when it is not a flat
/// Int64, Timestamp or Float64 column without nulls or NaN whose properties ask for PLAIN or
/// BYTE_STREAM_SPLIT pages, compressed as [`ChunkPages`] can, without a bloom filter or
/// statistics in page headers: arrow-rs's writer takes those.
pub(super) fn encode_chunk(
    column: &ArrayRef,
    descr: &ColumnDescPtr,
    properties: &WriterProperties,
) -> Result<Option<(bytes::Bytes, ColumnCloseResult)>> {
    let path = descr.path();
    let asks_for_more = properties.bloom_filter_properties(path).is_some()
        || properties.write_page_header_statistics(path)
        || properties.content_defined_chunking().is_some()
        || !super::pages::compresses(properties.compression(path));
    let Some(encoding) = encoding(descr, properties) else {
        return Ok(None);
    };
    if asks_for_more
        || descr.max_rep_level() != 0
        || descr.max_def_level() > 1
        || column.logical_null_count() != 0
    {
        return Ok(None);
    }
    let data = column.to_data();
    match (column.data_type(), descr.physical_type()) {
        (DataType::Int64 | DataType::Timestamp(_, _), Type::INT64) => {
            encode_values(data.buffer::<i64>(0), descr, properties, encoding)
        }
        (DataType::Float64, Type::DOUBLE) => {
            encode_values(data.buffer::<f64>(0), descr, properties, encoding)
        }
        _ => Ok(None),
    }
}

/// The encoding the properties ask for, where it is one written here.
fn encoding(descr: &ColumnDescPtr, properties: &WriterProperties) -> Option<Encoding> {
    let path = descr.path();
    if properties.dictionary_enabled(path) {
        return None;
    }
    match properties.encoding(path) {
        Some(encoding @ (Encoding::PLAIN | Encoding::BYTE_STREAM_SPLIT)) => Some(encoding),
        // Version 1 files fall back to PLAIN; version 2 to delta encodings.
        None if properties.writer_version() == WriterVersion::PARQUET_1_0 => Some(Encoding::PLAIN),
        _ => None,
    }
}

fn encode_values<T: Value>(
    values: &[T],
    descr: &ColumnDescPtr,
    properties: &WriterProperties,
    encoding: Encoding,
) -> Result<Option<(bytes::Bytes, ColumnCloseResult)>> {
    let path = descr.path();
    let page_rows = properties
        .data_page_row_count_limit()
        .min(properties.column_data_page_size_limit(path) / size_of::<T>())
        .max(1);
    let Some(page_stats) = values
        .chunks(page_rows)
        .map(T::min_max)
        .collect::<Option<Vec<(T, T)>>>()
    else {
        return Ok(None);
    };

    let mut pages = ChunkPages::new(descr, properties)?;
    let mut buffer = Vec::new();
    for page in values.chunks(page_rows) {
        buffer.clear();
        if descr.max_def_level() == 1 {
            definition_levels(None, page.len(), &mut buffer);
        }
        match encoding {
            Encoding::BYTE_STREAM_SPLIT => {
                split_streams(page.to_byte_slice(), size_of::<T>(), &mut buffer)
            }
            _ => buffer.extend_from_slice(page.to_byte_slice()),
        }
        pages.data_page(&buffer, page.len(), encoding)?;
    }

    let enabled = properties.statistics_enabled(path);
    let min = page_stats
        .iter()
        .map(|(min, _)| *min)
        .reduce(|a, b| if b < a { b } else { a });
    let max = page_stats
        .iter()
        .map(|(_, max)| *max)
        .reduce(|a, b| if b > a { b } else { a });
    let statistics = (enabled != EnabledStatistics::None).then(|| {
        T::statistics(
            ValueStatistics::new(min, max, None, Some(0), false)
                .with_backwards_compatible_min_max(descr.sort_order().is_signed()),
        )
    });
    let column_index = (enabled == EnabledStatistics::Page)
        .then(|| column_index(descr, &page_stats))
        .transpose()?;
    pages
        .finish(descr.clone(), properties, statistics, column_index)
        .map(Some)
}

/// The column index of pages with `page_stats` (min, max), none of them null; their boundary
/// order as arrow-rs's writer finds it.
fn column_index<T: Value>(
    descr: &ColumnDescPtr,
    page_stats: &[(T, T)],
) -> Result<datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData> {
    let mut index = ColumnIndexBuilder::new(descr.physical_type());
    for (min, max) in page_stats {
        index.append(
            false,
            min.to_byte_slice().to_vec(),
            max.to_byte_slice().to_vec(),
            0,
        );
    }
    let pairs = || page_stats.windows(2).map(|w| (w[0], w[1]));
    let ascending =
        pairs().all(|((min, max), (next_min, next_max))| !(min > next_min || max > next_max));
    let descending =
        pairs().all(|((min, max), (next_min, next_max))| !(next_min > min || next_max > max));
    index.set_boundary_order(match (ascending, descending) {
        (true, _) => BoundaryOrder::ASCENDING,
        (false, true) => BoundaryOrder::DESCENDING,
        (false, false) => BoundaryOrder::UNORDERED,
    });
    index.build()
}

/// Appends `bytes` (values of `width` bytes each) as BYTE_STREAM_SPLIT encodes them: the first
/// byte of every value, then the second of every value, and so on.
fn split_streams(bytes: &[u8], width: usize, out: &mut Vec<u8>) {
    let values = bytes.len() / width;
    let start = out.len();
    out.resize(start + bytes.len(), 0);
    let mut streams: Vec<&mut [u8]> = out[start..].chunks_exact_mut(values.max(1)).collect();
    // Eight values at a time: byte `k` of each gathered into one word, stored to stream `k`.
    let blocks = bytes.chunks_exact(8 * width);
    let rest = blocks.remainder();
    for (block, group) in blocks.enumerate() {
        for (stream, out) in streams.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            for (slot, value) in word.iter_mut().zip(group.chunks_exact(width)) {
                *slot = value[stream];
            }
            out[8 * block..8 * block + 8].copy_from_slice(&word);
        }
    }
    let done = values - rest.len() / width;
    for (index, value) in rest.chunks_exact(width).enumerate() {
        for (stream, byte) in value.iter().enumerate() {
            streams[stream][done + index] = *byte;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_split_in_blocks_and_rest() {
        for values in [0usize, 1, 7, 8, 9, 23] {
            let bytes: Vec<u8> = (0..values * 8).map(|i| i as u8).collect();
            let mut out = vec![0xAA];
            split_streams(&bytes, 8, &mut out);
            let mut want = vec![0xAA];
            for stream in 0..8 {
                want.extend((0..values).map(|value| bytes[value * 8 + stream]));
            }
            assert_eq!(out, want, "{values} values");
        }
    }
}
