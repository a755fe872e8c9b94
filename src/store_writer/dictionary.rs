//! Label columns written from their Arrow dictionaries: a dictionary page of the values in use
//! and RLE/bit-packed indices, read from the rows as runs of one key.

use datafusion::arrow::array::{Array, AsArray, DictionaryArray};
use datafusion::arrow::datatypes::Int32Type;
use datafusion::parquet::basic::Encoding;
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::data_type::ByteArray;
use datafusion::parquet::errors::{ParquetError, Result};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::file::statistics::Statistics;
use datafusion::parquet::schema::types::ColumnDescPtr;

use super::hybrid::{RunCursor, bits_for, definition_levels, encode_hybrid, run_length};
use super::pages::ChunkPages;

/// Whether the properties ask for nothing of `descr` beyond what [`encode_chunk`] writes: a
/// dictionary, a codec it has, and no bloom filter.
pub(super) fn encodes(descr: &ColumnDescPtr, properties: &WriterProperties) -> bool {
    properties.dictionary_enabled(descr.path())
        && properties.bloom_filter_properties(descr.path()).is_none()
        && super::pages::compresses(properties.compression(descr.path()))
}

/// One column chunk of a flat, optional byte-array column: a PLAIN dictionary page of the values
/// the rows use (in order of first use), then data pages of RLE definition levels and
/// RLE/bit-packed dictionary indices, each compressed, with an offset index and, where the
/// properties ask for statistics, min/max taken over the dictionary's values in use.
pub(super) fn encode_chunk(
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
    let values = array.values().as_string::<i32>();
    let keys = array.keys();
    let nulls = array.logical_nulls().filter(|n| n.null_count() > 0);
    if descr.max_def_level() == 0 && nulls.is_some() {
        return Err(ParquetError::General(format!(
            "column {} is required but holds nulls",
            descr.path()
        )));
    }

    // The dictionary index of the non-null rows as runs, numbering the values in order of first
    // use. Label columns hold long runs of one key, so this costs little more than a read.
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

    let mut pages = ChunkPages::new(&descr, properties)?;
    let mut dictionary = Vec::new();
    for key in &used {
        let value = values.value(*key).as_bytes();
        dictionary.extend_from_slice(&(value.len() as u32).to_le_bytes());
        dictionary.extend_from_slice(value);
    }
    pages.dictionary_page(&dictionary, used.len())?;

    let bit_width = bits_for(used.len().saturating_sub(1) as u32);
    let page_rows = properties.data_page_row_count_limit().max(1);
    let mut indices = RunCursor::new(&runs);
    let mut buffer = Vec::new();
    let mut page_runs = Vec::new();
    for first_row in (0..array.len()).step_by(page_rows) {
        let rows = page_rows.min(array.len() - first_row);
        buffer.clear();
        let page_nulls = nulls.as_ref().map(|n| n.slice(first_row, rows));
        if descr.max_def_level() == 1 {
            definition_levels(page_nulls.as_ref(), rows, &mut buffer);
        }
        let present = rows - page_nulls.map_or(0, |n| n.null_count());
        buffer.push(bit_width);
        indices.take(present, &mut page_runs);
        encode_hybrid(&page_runs, bit_width, &mut buffer);
        pages.data_page(&buffer, rows, Encoding::RLE_DICTIONARY)?;
    }

    let statistics =
        (properties.statistics_enabled(descr.path()) != EnabledStatistics::None).then(|| {
            let in_use = || used.iter().map(|key| values.value(*key));
            let to_bytes = |text: &str| ByteArray::from(text.as_bytes().to_vec());
            Statistics::byte_array(
                in_use().min().map(to_bytes),
                in_use().max().map(to_bytes),
                None,
                Some(nulls.as_ref().map_or(0, |n| n.null_count()) as u64),
                false,
            )
        });
    pages.finish(descr, properties, statistics, None)
}
