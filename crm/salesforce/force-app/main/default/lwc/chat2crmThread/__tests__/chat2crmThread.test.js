/*
 * chat2crmThread rendered in jsdom, its wire adapters fed with the GraphQL API's response shape and
 * its record writes (lightning/uiRecordApi) recorded: what an agent sees and what the component writes.
 */
import { createElement } from '@lwc/engine-dom';
import Chat2crmThread, { POLL_MILLISECONDS } from 'c/chat2crmThread';
import { graphql } from 'lightning/graphql';
import { createRecord, getRecord, updateRecord } from 'lightning/uiRecordApi';

const THREAD = require('./data/thread.json');

const LEAD_ID = '00Q000000000001AAA';
const KEY = 'c2c-0123456789abcdef0123456789abcdef';
const DRAFT_ID = 'a0B000000000009AAA';

/** The fields every record the component writes carries, copied from the thread's latest message. */
const CONVERSATION = {
    Direction__c: 'Outbound',
    Channel__c: 'whatsapp',
    Conversation_Key__c: KEY,
    Agent_Name__c: 'Ana Agent',
    Lead__c: LEAD_ID
};

function flushPromises() {
    // eslint-disable-next-line @lwc/lwc/no-async-operation
    return new Promise((resolve) => setTimeout(resolve, 0));
}

/** The component on a Lead page, the thread and the current user emitted; returns it and its refresh spy. */
async function render(thread = THREAD) {
    const element = createElement('c-chat2crm-thread', { is: Chat2crmThread });
    element.recordId = LEAD_ID;
    document.body.appendChild(element);
    const refresh = jest.fn(() => Promise.resolve());
    graphql.emit(thread, undefined, refresh);
    getRecord.emit({ fields: { Name: { value: 'Ana Agent' } } });
    await flushPromises();
    return { element, refresh };
}

function $(element, dataId) {
    return element.shadowRoot.querySelector(`[data-id="${dataId}"]`);
}

function typeReply(element, text) {
    const textarea = $(element, 'reply');
    textarea.value = text;
    textarea.dispatchEvent(new CustomEvent('change', { detail: { value: text } }));
}

async function click(element, dataId) {
    $(element, dataId).click();
    await flushPromises();
}

describe('c-chat2crm-thread', () => {
    afterEach(() => {
        while (document.body.firstChild) {
            document.body.removeChild(document.body.firstChild);
        }
        jest.clearAllMocks();
        jest.useRealTimers();
    });

    it('asks for the messages of the record it sits on', async () => {
        await render();
        expect(graphql.getLastConfig().variables).toEqual({ recordId: LEAD_ID });
    });

    it('shows the messages oldest first, with authors and delivery statuses', async () => {
        const { element } = await render();
        const rows = [...element.shadowRoot.querySelectorAll('[data-id="message"]')];
        expect(rows.map((row) => row.querySelector('.body').textContent)).toEqual([
            'Hello, I would like an appointment.',
            'Which day suits you?',
            'Good morning, this is the clinic.',
            'Tuesday at 10 works.',
            'Here is the address.',
            'Please bring your referral letter.'
        ]);
        expect(rows.map((row) => row.querySelector('.author').textContent)).toEqual([
            'Patient', 'Bot', 'Ana Agent', 'Ana Agent', 'Ana Agent', 'Ana Agent'
        ]);
        const statuses = rows.map((row) => {
            const status = row.querySelector('[data-id="status"]');
            return status ? status.textContent : null;
        });
        // the patient's message and the bot's history carry no delivery status
        expect(statuses).toEqual([null, null, '✓✓Read', '✓✓Delivered', '!Failed', '✓Sent']);
        expect(rows[2].querySelector('.status-read')).not.toBeNull();
        expect($(element, 'empty')).toBeNull();
    });

    it('shows why a reply failed', async () => {
        const { element } = await render();
        const errors = [...element.shadowRoot.querySelectorAll('[data-id="error"]')];
        expect(errors.map((error) => error.textContent.trim())).toEqual([
            "The patient's number is not on WhatsApp (131026)"
        ]);
    });

    it('sends a reply without files as one New record with the conversation copied', async () => {
        const { element, refresh } = await render();
        typeReply(element, '  See you on Tuesday.  ');
        await click(element, 'send');
        expect(createRecord).toHaveBeenCalledTimes(1);
        expect(createRecord.mock.calls[0][0]).toEqual({
            apiName: 'Chat2CRM_Message__c',
            fields: { ...CONVERSATION, Type__c: 'Message', Status__c: 'New', Body__c: 'See you on Tuesday.' }
        });
        expect(updateRecord).not.toHaveBeenCalled();
        expect(refresh).toHaveBeenCalled();
        expect($(element, 'reply').value).toBe('');
        expect($(element, 'action-error')).toBeNull();
    });

    it('attaches files to a Draft record, then sends it by setting it New', async () => {
        createRecord.mockResolvedValueOnce({ id: DRAFT_ID });
        const { element, refresh } = await render();
        typeReply(element, 'Your prescription');
        expect($(element, 'upload')).toBeNull();

        await click(element, 'attach');
        expect(createRecord).toHaveBeenCalledTimes(1);
        expect(createRecord.mock.calls[0][0]).toEqual({
            apiName: 'Chat2CRM_Message__c',
            fields: { ...CONVERSATION, Type__c: 'Message', Status__c: 'Draft', Body__c: 'Your prescription' }
        });
        const upload = $(element, 'upload');
        expect(upload.recordId).toBe(DRAFT_ID);
        expect($(element, 'attach').disabled).toBe(true);

        upload.dispatchEvent(new CustomEvent('uploadfinished', {
            detail: { files: [{ name: 'prescription.pdf', documentId: '069000000000001AAA' }] }
        }));
        await flushPromises();
        expect($(element, 'files').textContent).toBe('prescription.pdf');

        typeReply(element, 'Your prescription, signed');
        await click(element, 'send');
        expect(updateRecord).toHaveBeenCalledTimes(1);
        expect(updateRecord.mock.calls[0][0]).toEqual({
            fields: { Id: DRAFT_ID, Body__c: 'Your prescription, signed', Status__c: 'New' }
        });
        expect(createRecord).toHaveBeenCalledTimes(1);
        expect(refresh).toHaveBeenCalled();
        expect($(element, 'upload')).toBeNull();
    });

    it('sends files without text, but refuses an empty reply', async () => {
        const { element } = await render();
        typeReply(element, '   ');
        await click(element, 'send');
        expect(createRecord).not.toHaveBeenCalled();
        expect(updateRecord).not.toHaveBeenCalled();
        expect($(element, 'action-error').textContent.trim()).toBe('Write a reply or attach a file first.');

        createRecord.mockResolvedValueOnce({ id: DRAFT_ID });
        await click(element, 'attach');
        $(element, 'upload').dispatchEvent(new CustomEvent('uploadfinished', {
            detail: { files: [{ name: 'x-ray.jpg', documentId: '069000000000002AAA' }] }
        }));
        await click(element, 'send');
        expect(updateRecord.mock.calls[0][0]).toEqual({
            fields: { Id: DRAFT_ID, Body__c: '', Status__c: 'New' }
        });
    });

    it('on a Case page copies the Contact and Case lookups, and no name before the user is known', async () => {
        const onCase = JSON.parse(JSON.stringify(THREAD));
        for (const { node } of onCase.uiapi.query.Chat2CRM_Message__c.edges) {
            node.Lead__c = { value: null };
            node.Contact__c = { value: '003000000000001AAA' };
            node.Case__c = { value: '500000000000001AAA' };
            node.Channel__c = { value: 'telegram' };
        }
        const element = createElement('c-chat2crm-thread', { is: Chat2crmThread });
        element.recordId = '500000000000001AAA';
        document.body.appendChild(element);
        graphql.emit(onCase, undefined, jest.fn(() => Promise.resolve()));
        await flushPromises();

        typeReply(element, 'Your results are in.');
        await click(element, 'send');
        expect(createRecord.mock.calls[0][0].fields).toEqual({
            Direction__c: 'Outbound',
            Type__c: 'Message',
            Status__c: 'New',
            Channel__c: 'telegram',
            Conversation_Key__c: KEY,
            Contact__c: '003000000000001AAA',
            Case__c: '500000000000001AAA',
            Body__c: 'Your results are in.'
        });
    });

    it('closes the conversation with a Close record', async () => {
        const { element, refresh } = await render();
        await click(element, 'close');
        expect(createRecord).toHaveBeenCalledTimes(1);
        expect(createRecord.mock.calls[0][0]).toEqual({
            apiName: 'Chat2CRM_Message__c',
            fields: { ...CONVERSATION, Type__c: 'Close' }
        });
        expect(refresh).toHaveBeenCalled();
    });

    it('shows a closed conversation and does not offer to close it again', async () => {
        const closed = JSON.parse(JSON.stringify(THREAD));
        const edges = closed.uiapi.query.Chat2CRM_Message__c.edges;
        edges.unshift({
            node: {
                ...edges[0].node,
                Id: 'a0B000000000007AAA',
                Type__c: { value: 'Close' },
                Body__c: { value: null },
                Status__c: { value: null }
            }
        });
        const { element } = await render(closed);
        const rows = element.shadowRoot.querySelectorAll('[data-id="message"]');
        expect(rows[rows.length - 1].textContent).toBe('Conversation closed by Ana Agent');
        expect($(element, 'close').disabled).toBe(true);
        expect($(element, 'send').disabled).toBe(false);
    });

    it('shows why a reply could not be written, and keeps the text', async () => {
        createRecord.mockRejectedValueOnce({
            body: {
                message: 'An error occurred while trying to update the record.',
                output: {
                    errors: [{ errorCode: 'INSUFFICIENT_ACCESS_OR_READONLY', message: 'insufficient access rights on object id' }]
                }
            }
        });
        const { element, refresh } = await render();
        typeReply(element, 'See you on Tuesday.');
        await click(element, 'send');
        expect($(element, 'action-error').textContent.trim()).toBe(
            'The reply was not sent: insufficient access rights on object id'
        );
        expect($(element, 'reply').value).toBe('See you on Tuesday.');
        expect(refresh).not.toHaveBeenCalled();
        expect($(element, 'send').disabled).toBe(false);
    });

    it('offers no reply before the patient has written', async () => {
        const { element } = await render({ uiapi: { query: { Chat2CRM_Message__c: { edges: [] } } } });
        expect($(element, 'empty')).not.toBeNull();
        expect($(element, 'send').disabled).toBe(true);
        expect($(element, 'close').disabled).toBe(true);
        expect($(element, 'attach').disabled).toBe(true);
    });

    it('says when the conversation cannot be read', async () => {
        const element = createElement('c-chat2crm-thread', { is: Chat2crmThread });
        element.recordId = LEAD_ID;
        document.body.appendChild(element);
        graphql.emitErrors([{ message: 'No such column Direction__c' }]);
        await flushPromises();
        expect($(element, 'load-error').textContent).toContain('No such column Direction__c');
    });

    it('reads the thread again every few seconds while open, and stops when removed', async () => {
        jest.useFakeTimers();
        const element = createElement('c-chat2crm-thread', { is: Chat2crmThread });
        element.recordId = LEAD_ID;
        document.body.appendChild(element);
        const refresh = jest.fn(() => Promise.resolve());
        graphql.emit(THREAD, undefined, refresh);

        jest.advanceTimersByTime(POLL_MILLISECONDS - 1);
        expect(refresh).not.toHaveBeenCalled();
        jest.advanceTimersByTime(1);
        expect(refresh).toHaveBeenCalledTimes(1);
        jest.advanceTimersByTime(POLL_MILLISECONDS);
        expect(refresh).toHaveBeenCalledTimes(2);

        document.body.removeChild(element);
        jest.advanceTimersByTime(POLL_MILLISECONDS * 3);
        expect(refresh).toHaveBeenCalledTimes(2);
    });
});
